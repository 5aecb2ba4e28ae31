//! Benchmark of the LDAP connector against the real slapd, each figure set
//! against the same work done with OpenLDAP's own `ldapsearch` / `ldapmodify`.
//!
//! 1. `List` of 10,000 accounts (each in one group), pages of 500, through the
//!    `Connector` trait — vs one paged `ldapsearch` of the accounts plus one
//!    `ldapsearch` of the groups with their members (the same information).
//! 2. 1,000 `Apply` (create with one group and two attributes) + `Read`
//!    pairs, one after another — vs one `ldapmodify` process applying the same
//!    adds and group modifications over one connection, then `ldapsearch -f`
//!    reading each entry and each membership back (one connection each).
//!
//! Run: `deploy/local/slapd.sh start /tmp/run && source /tmp/run/slapd.env &&
//! cargo bench -p connector-ldap` (`-- list`: the List figure only, three runs). Everything is created under a fresh OU and
//! group and deleted afterwards.

#[global_allocator]
static GLOBAL: connector_kit::Allocator = connector_kit::Allocator;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use connector_kit::Connector;
use connector_kit::contract as pb;
use connector_ldap::{LdapConfig, LdapConnector};
use futures::StreamExt;

const LIST_ACCOUNTS: usize = 10_000;
const APPLY_READ_PAIRS: usize = 1_000;
const PAGE_SIZE: u32 = 500;
const LIST_RUNS: usize = 3;

fn var(name: &str) -> anyhow::Result<String> {
    std::env::var(name).map_err(|_| {
        anyhow::anyhow!("{name} is not set: run `deploy/local/slapd.sh start RUN_DIR` and `source RUN_DIR/slapd.env`")
    })
}

struct Slapd {
    url: String,
    base_dn: String,
    bind_dn: String,
    password_file: String,
}

impl Slapd {
    fn tool(&self, tool: &str) -> Command {
        let mut command = Command::new(tool);
        command.args(["-x", "-H", &self.url, "-D", &self.bind_dn, "-y", &self.password_file]);
        command
    }

    /// Runs an LDAP tool with `input` on stdin, output discarded.
    fn run(&self, mut command: Command, input: &str) -> anyhow::Result<()> {
        let mut child = command.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
        child.stdin.take().ok_or_else(|| anyhow::anyhow!("no stdin"))?.write_all(input.as_bytes())?;
        let output = child.wait_with_output()?;
        anyhow::ensure!(output.status.success(), "{:?} failed: {}", command, String::from_utf8_lossy(&output.stderr));
        Ok(())
    }
}

fn timed<T>(f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<(T, Duration)> {
    let start = Instant::now();
    let value = f()?;
    Ok((value, start.elapsed()))
}

fn person(ou: &str, name: &str) -> String {
    format!(
        "dn: uid={name},{ou}\nobjectClass: inetOrgPerson\nuid: {name}\ncn: {name}\nsn: {name}\n\
         employeeNumber: {name}-p\ndisplayName: Person {name}\nmail: {name}@example.org\n\n"
    )
}

fn main() -> anyhow::Result<()> {
    let slapd = Slapd {
        url: var("JML_TEST_SLAPD_URL")?,
        base_dn: var("JML_TEST_SLAPD_BASE_DN")?,
        bind_dn: var("JML_TEST_SLAPD_BIND_DN")?,
        password_file: var("JML_TEST_SLAPD_BIND_PASSWORD_FILE")?,
    };
    let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
    let ou = format!("ou=bench{tag},{}", slapd.base_dn);
    let group_name = format!("bench{tag}");
    let group_dn = format!("cn={group_name},ou=groups,{}", slapd.base_dn);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;

    // Seed: the OU, 10,000 accounts, one group holding them all.
    let mut seed = format!("dn: {ou}\nobjectClass: organizationalUnit\nou: bench{tag}\n\n");
    let mut members = String::new();
    for n in 0..LIST_ACCOUNTS {
        let name = format!("s{tag}{n:05}");
        seed.push_str(&person(&ou, &name));
        members.push_str(&format!("member: uid={name},{ou}\n"));
    }
    seed.push_str(&format!(
        "dn: {group_dn}\nobjectClass: groupOfNames\ncn: {group_name}\nmember: cn=nobody,{}\n{members}\n",
        slapd.base_dn
    ));
    let mut add = slapd.tool("ldapadd");
    add.arg("-c");
    let ((), seeded) = timed(|| slapd.run(add, &seed))?;
    println!("seeded {LIST_ACCOUNTS} accounts in {:.2} s", seeded.as_secs_f64());

    // `cargo bench -- list`: the List figure only.
    let list_only = std::env::args().skip(1).any(|a| a == "list");
    let result = runtime.block_on(measure(&slapd, &ou, &group_name, &tag, list_only));

    // Clean up whatever happened.
    let mut delete = slapd.tool("ldapdelete");
    delete.args(["-r", "-c", &ou, &group_dn]);
    slapd.run(delete, "")?;
    result
}

async fn measure(slapd: &Slapd, ou: &str, group_name: &str, tag: &str, list_only: bool) -> anyhow::Result<()> {
    let yaml = format!(
        "target_id: ldap-bench\nurl: {}\nbind_dn: {}\nbind_password: {{ file: {} }}\nusers_base_dn: {ou}\n\
         groups_base_dn: ou=groups,{}\nempty_group_member: cn=nobody,{}\n",
        slapd.url, slapd.bind_dn, slapd.password_file, slapd.base_dn, slapd.base_dn
    );
    let config: LdapConfig = serde_yaml_ng::from_str(&yaml)?;
    let password = config.bind_password()?;
    let connector = LdapConnector::new(config, password)?;
    connector.preflight().await?;

    // 1. List, three runs, each beside the same work with the tools.
    for run in 1..=LIST_RUNS {
        let start = Instant::now();
        let mut pages = connector.list(PAGE_SIZE);
        let (mut listed, mut with_group) = (0usize, 0usize);
        while let Some(page) = pages.next().await {
            for account in page? {
                listed += 1;
                with_group += usize::from(account.entitlements.iter().any(|e| e.id == group_name));
            }
        }
        let connector_list = start.elapsed();
        anyhow::ensure!(
            listed == LIST_ACCOUNTS && with_group == LIST_ACCOUNTS,
            "listed {listed}, {with_group} in group"
        );

        let filter = "(&(objectClass=inetOrgPerson)(employeeNumber=*))";
        let mut accounts = slapd.tool("ldapsearch");
        accounts.args([
            "-LLL",
            "-E",
            &format!("pr={PAGE_SIZE}/noprompt"),
            "-b",
            ou,
            filter,
            "*",
            "pwdAccountLockedTime",
        ]);
        let ((), search_accounts) = timed(|| slapd.run(accounts, ""))?;
        let mut groups = slapd.tool("ldapsearch");
        groups.args([
            "-LLL",
            "-b",
            &format!("ou=groups,{}", slapd.base_dn),
            "(objectClass=groupOfNames)",
            "cn",
            "member",
        ]);
        let ((), search_groups) = timed(|| slapd.run(groups, ""))?;
        let tools_list = search_accounts + search_groups;
        println!(
            "list {LIST_ACCOUNTS} (run {run}): connector {:.3} s; ldapsearch {:.3} s (accounts {:.3} s + groups {:.3} s); \
             ratio {:.2}",
            connector_list.as_secs_f64(),
            tools_list.as_secs_f64(),
            search_accounts.as_secs_f64(),
            search_groups.as_secs_f64(),
            connector_list.as_secs_f64() / tools_list.as_secs_f64()
        );
    }
    if list_only {
        return Ok(());
    }

    // 2. Apply + Read pairs.
    let start = Instant::now();
    for n in 0..APPLY_READ_PAIRS {
        let name = format!("a{tag}{n:04}");
        let desired = pb::DesiredAccount {
            account: Some(pb::AccountRef { person_id: format!("{name}-p"), account_name: name.clone() }),
            presence: pb::Presence::Present as i32,
            enabled: true,
            attributes: [
                ("display_name".to_string(), format!("Person {name}")),
                ("mail".to_string(), format!("{name}@example.org")),
            ]
            .into(),
            entitlements: vec![pb::Entitlement { kind: "group".into(), id: group_name.into(), privileged: false }],
            credentials: pb::CredentialAction::Keep as i32,
            owned_identities: None,
        };
        connector.apply(&format!("bench-{n}"), &desired).await?;
        let state = connector.read(desired.account.as_ref().ok_or_else(|| anyhow::anyhow!("account"))?).await?;
        anyhow::ensure!(state.exists && state.entitlements.len() == 1, "read-back of {name}");
    }
    let connector_pairs = start.elapsed();

    let group_dn = format!("cn={group_name},ou=groups,{}", slapd.base_dn);
    let mut ldif = String::new();
    let mut names = String::new();
    let mut dns = String::new();
    for n in 0..APPLY_READ_PAIRS {
        let name = format!("m{tag}{n:04}");
        ldif.push_str(&format!("dn: uid={name},{ou}\nchangetype: add\n"));
        ldif.push_str(person(ou, &name).split_once('\n').map(|(_, rest)| rest).unwrap_or_default());
        ldif.push_str(&format!("dn: {group_dn}\nchangetype: modify\nadd: member\nmember: uid={name},{ou}\n\n"));
        names.push_str(&format!("{name}\n"));
        dns.push_str(&format!("uid={name},{ou}\n"));
    }
    let dir = std::env::temp_dir().join(format!("jml-ldap-bench-{tag}"));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("names"), names)?;
    std::fs::write(dir.join("dns"), dns)?;
    let modify = slapd.tool("ldapmodify");
    let ((), tools_modify) = timed(|| slapd.run(modify, &ldif))?;
    let mut read_entries = slapd.tool("ldapsearch");
    read_entries.args(["-LLL", "-b", ou, "-f"]).arg(dir.join("names")).args(["(uid=%s)", "*", "pwdAccountLockedTime"]);
    let ((), tools_read) = timed(|| slapd.run(read_entries, ""))?;
    let mut read_groups = slapd.tool("ldapsearch");
    read_groups
        .args(["-LLL", "-b", &format!("ou=groups,{}", slapd.base_dn), "-f"])
        .arg(dir.join("dns"))
        .args(["(member=%s)", "cn"]);
    let ((), tools_groups) = timed(|| slapd.run(read_groups, ""))?;
    std::fs::remove_dir_all(&dir)?;
    let tools_pairs = tools_modify + tools_read + tools_groups;
    println!(
        "apply+read x{APPLY_READ_PAIRS}: connector {:.3} s ({:.2} ms/pair); ldapmodify+ldapsearch {:.3} s \
         (modify {:.3} s + entries {:.3} s + memberships {:.3} s); ratio {:.2}",
        connector_pairs.as_secs_f64(),
        connector_pairs.as_secs_f64() * 1000.0 / APPLY_READ_PAIRS as f64,
        tools_pairs.as_secs_f64(),
        tools_modify.as_secs_f64(),
        tools_read.as_secs_f64(),
        tools_groups.as_secs_f64(),
        connector_pairs.as_secs_f64() / tools_pairs.as_secs_f64()
    );
    Ok(())
}
