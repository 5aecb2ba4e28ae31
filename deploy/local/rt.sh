#!/usr/bin/env bash
# Request Tracker 5 (Debian `request-tracker5`) for the ticket connector's tests: the real
# ticketing system behind manual targets, driven over its REST2 API.
#
#   deploy/local/rt.sh install          apt-installs request-tracker5 and its SQLite backend
#                                       (rt5-db-sqlite) without prompts; dbconfig-common is told not
#                                       to make a database (each start makes its own)
#   deploy/local/rt.sh start RUN_DIR    a private RT under RUN_DIR/rt/: its own site config (read
#                                       through RT_SITE_CONFIG, never /etc), a SQLite database
#                                       initialised by rt-setup-database, the queue `jml-manual`
#                                       whose rights go to privileged users, the users the tests
#                                       and the connector sign in as (random passwords, files of
#                                       mode 0600), then `rt-server` (Starlet) on a free loopback
#                                       port; waits until REST2 answers; writes RUN_DIR/rt.env:
#                                         JML_TEST_RT_URL             base URL (REST2 is at /REST/2.0)
#                                         JML_TEST_RT_QUEUE           the queue (jml-manual)
#                                         JML_TEST_RT_USER            the connector's user (jml-connector)
#                                         JML_TEST_RT_PASSWORD_FILE   its password
#                                         JML_TEST_RT_ADMIN_USER      root (tests create users with it)
#                                         JML_TEST_RT_ADMIN_PASSWORD_FILE
#                                         JML_TEST_RT_FULFILLERS      fulfiller users (comma-separated)
#                                         JML_TEST_RT_FULFILLER_PASSWORD_FILE  their shared password
#   deploy/local/rt.sh stop RUN_DIR     stops it (idempotent)
#
# Outgoing mail goes to RT's `testfile` mailer (files in /tmp), never to a network.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
source "$here/lib.sh"

RT_LIB=/usr/share/request-tracker5/lib
RT_SERVER=/usr/share/request-tracker5/libexec/rt-server
QUEUE=jml-manual
CONNECTOR_USER=jml-connector
FULFILLERS=(fulfiller-ana fulfiller-bo)

install() {
  if dpkg -s request-tracker5 rt5-db-sqlite >/dev/null 2>&1; then return 0; fi
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo -E)
  echo "request-tracker5 request-tracker5/dbconfig-install boolean false" | "${sudo[@]}" debconf-set-selections
  apt_install request-tracker5 rt5-db-sqlite
}

secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }

start() {
  local run_dir=${1:?usage: rt.sh start RUN_DIR}
  install
  mkdir -p "$run_dir/rt"
  run_dir=$(cd "$run_dir" && pwd)
  local data=$run_dir/rt
  stop "$run_dir"
  rm -rf "$data"
  mkdir -p "$data/site.d"
  chmod 700 "$data"
  local port; port=$(free_port)
  (umask 077
   secret >"$data/root.password"
   secret >"$data/connector.password"
   secret >"$data/fulfiller.password")
  cat >"$data/RT_SiteConfig.pm" <<EOF
Set(\$rtname, 'jml-test');
Set(\$Organization, 'lifecycle-mesh.test');
Set(\$CorrespondAddress, 'rt\@lifecycle-mesh.test');
Set(\$CommentAddress, 'rt-comment\@lifecycle-mesh.test');
Set(\$DatabaseType, 'SQLite');
Set(\$DatabaseName, '$data/rtdb');
Set(\$WebDomain, '127.0.0.1');
Set(\$WebPort, $port);
Set(\$WebPath, '');
Set(\$WebBaseURL, 'http://127.0.0.1:$port');
Set(\$MailCommand, 'testfile');
Set(\$LogToSyslog, undef);
Set(\$LogToSTDERR, 'warning');
Set(\$Timezone, 'UTC');
1;
EOF
  export RT_SITE_CONFIG=$data/RT_SiteConfig.pm RT_SITE_CONFIG_DIR=$data/site.d
  /usr/sbin/rt-setup-database-5 --action init --skip-create >"$data/setup.log" 2>&1 \
    || /usr/sbin/rt-setup-database-5 --action init >"$data/setup.log" 2>&1 || {
      tail -n 30 "$data/setup.log" >&2
      return 1
    }
  # The queue, its rights for privileged users, and the users.
  perl -I"$RT_LIB" - "$QUEUE" "$CONNECTOR_USER" "$data" "${FULFILLERS[@]}" >"$data/objects.log" 2>&1 <<'PERL' || { cat "$data/objects.log" >&2; return 1; }
use strict; use warnings;
use RT; RT::LoadConfig(); RT::Init();
my ($queue_name, $connector, $data, @fulfillers) = @ARGV;
sub slurp { open my $fh, '<', $_[0] or die "$_[0]: $!"; my $v = <$fh>; chomp $v; $v }
my $system = RT->SystemUser;
my $root = RT::User->new($system); $root->Load('root');
my ($ok, $msg) = $root->SetPassword(slurp("$data/root.password")); die "root password: $msg" unless $ok;
my $queue = RT::Queue->new($system);
($ok, $msg) = $queue->Create(Name => $queue_name, Description => 'Lifecycle Mesh manual targets');
die "queue: $msg" unless $ok;
my $privileged = RT::Group->new($system); $privileged->LoadSystemInternalGroup('Privileged');
for my $right (qw(SeeQueue CreateTicket ShowTicket ModifyTicket CommentOnTicket ReplyToTicket
                  ShowTicketComments OwnTicket TakeTicket StealTicket ShowOutgoingEmail)) {
    ($ok, $msg) = $privileged->PrincipalObj->GrantRight(Right => $right, Object => $queue);
    die "right $right: $msg" unless $ok;
}
for my $spec ([$connector, "$data/connector.password"], map { [$_, "$data/fulfiller.password"] } @fulfillers) {
    my ($name, $file) = @$spec;
    my $user = RT::User->new($system);
    ($ok, $msg) = $user->Create(Name => $name, EmailAddress => "$name\@lifecycle-mesh.test", Privileged => 1,
                                Password => slurp($file));
    die "user $name: $msg" unless $ok;
}
print "ok\n";
PERL
  nohup "$RT_SERVER" --listen "127.0.0.1:$port" --workers 4 >"$data/server.log" 2>&1 &
  echo $! >"$data/pid"
  wait_for_port "$port" 120 || { tail -n 30 "$data/server.log" >&2; return 1; }
  local url="http://127.0.0.1:$port" deadline=$((SECONDS + 120))
  until python3 - "$url" "$data/connector.password" "$CONNECTOR_USER" <<'PY' 2>/dev/null
import base64, sys, urllib.request
url, password, user = sys.argv[1], open(sys.argv[2]).read().strip(), sys.argv[3]
auth = base64.b64encode(f"{user}:{password}".encode()).decode()
request = urllib.request.Request(url + "/REST/2.0/queues/all", headers={"Authorization": "Basic " + auth})
with urllib.request.urlopen(request, timeout=5) as response:
    sys.exit(0 if response.status == 200 else 1)
PY
  do
    if (( SECONDS >= deadline )); then echo "RT did not answer; see $data/server.log" >&2; return 1; fi
    sleep 0.5
  done
  local fulfillers; fulfillers=$(IFS=,; echo "${FULFILLERS[*]}")
  (umask 077
   cat >"$run_dir/rt.env" <<ENV
export JML_TEST_RT_URL=$url
export JML_TEST_RT_QUEUE=$QUEUE
export JML_TEST_RT_USER=$CONNECTOR_USER
export JML_TEST_RT_PASSWORD_FILE=$data/connector.password
export JML_TEST_RT_ADMIN_USER=root
export JML_TEST_RT_ADMIN_PASSWORD_FILE=$data/root.password
export JML_TEST_RT_FULFILLERS=$fulfillers
export JML_TEST_RT_FULFILLER_PASSWORD_FILE=$data/fulfiller.password
ENV
  )
}

stop() {
  local run_dir=${1:?usage: rt.sh stop RUN_DIR}
  rm -f "$run_dir/rt.env"
  local file=$run_dir/rt/pid
  [[ -f $file ]] || return 0
  local pid; pid=$(cat "$file")
  # Starlet's workers are the master's children: TERM them all.
  pkill -TERM -P "$pid" 2>/dev/null || true
  stop_pidfile "$file"
}

case ${1:-} in
  install) install ;;
  start) start "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 install | start RUN_DIR | stop RUN_DIR" >&2; exit 2 ;;
esac
