//! The integration harness: what end-to-end tests share.
//!
//! - [`MeshProcess`]: a real binary of the workspace started as a child
//!   process; its `listening on ADDR` line gives the bound address (so every
//!   process binds port 0), and it is killed when dropped.
//! - [`binary`]: where `cargo build --workspace --bins` put a binary.
//! - [`target_env`]: a real target server's setting, written by
//!   `deploy/local/<target>.sh start`; a missing one fails the test with
//!   the command that provides it.
//! - [`assert_eventually!`]: polls a condition until it holds or a bound passes.
//! - [`test_pki`]: throwaway certificate authorities for mutual TLS tests.
//! - [`trace_receiver`]: an OTLP/gRPC trace receiver (also the
//!   `otlp-receiver` binary, the compose file's trace backend).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};

pub mod test_pki;
pub mod trace_receiver;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("."))
}

/// The path of a workspace binary in the target directory this test was
/// built into. Fails when it is not built.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("current test executable")?;
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe.parent().and_then(Path::parent).context("target directory")?;
    let path = profile_dir.join(name);
    if !path.exists() {
        bail!("{} is not built: run `cargo build --workspace --bins` first (.ci/run does)", path.display());
    }
    Ok(path)
}

/// A real target server's setting from the environment.
pub fn target_env(target: &str, name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: start the real {target} server with `deploy/local/{target}.sh start .run/dev` and \
             `source .run/dev/{target}.env` (or run .ci/run)"
        )
    })
}

/// A child process of the mesh, killed on drop.
pub struct MeshProcess {
    name: String,
    child: Child,
    addr: SocketAddr,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    output: Arc<Mutex<String>>,
}

/// The most of a process's output [`MeshProcess::output`] keeps.
const MAX_OUTPUT_BYTES: usize = 32 * 1024 * 1024;

fn keep(output: &Mutex<String>, line: &str) {
    if let Ok(mut output) = output.lock()
        && output.len() + line.len() < MAX_OUTPUT_BYTES
    {
        output.push_str(line);
        output.push('\n');
    }
}

impl MeshProcess {
    /// Starts `binary` with `args` and waits (at most 60 s) for its
    /// `listening on ADDR` line.
    pub async fn start(binary: &Path, args: &[String], envs: &[(&str, &str)]) -> anyhow::Result<Self> {
        let name = binary.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut command = Command::new(binary);
        command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command.spawn().with_context(|| format!("starting {}", binary.display()))?;
        let stdout = child.stdout.take().context("stdout")?;
        let stderr = child.stderr.take().context("stderr")?;
        let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
        let output = Arc::new(Mutex::new(String::new()));
        let tail = stderr_tail.clone();
        let all = output.clone();
        let echo_name = name.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                keep(&all, &line);
                if std::env::var_os("JML_TEST_ECHO").is_some() {
                    eprintln!("[{echo_name}] {line}");
                }
                if let Ok(mut tail) = tail.lock() {
                    if tail.len() >= 200 {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }
        });
        let mut lines = BufReader::new(stdout).lines();
        let kept = output.clone();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await? {
                // Lines before it (e.g. the coordinator's `scim listening on ADDR`) are kept too.
                keep(&kept, &line);
                if let Some(addr) = line.strip_prefix("listening on ") {
                    return Ok::<_, anyhow::Error>(Some(addr.trim().parse::<SocketAddr>()?));
                }
            }
            Ok(None)
        })
        .await;
        let addr = match addr {
            Ok(Ok(Some(addr))) => addr,
            other => {
                let tail =
                    stderr_tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default();
                bail!("{name} did not report its address ({other:?}); its stderr:\n{tail}");
            }
        };
        let all = output.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                keep(&all, &line);
            }
        });
        Ok(Self { name, child, addr, stderr_tail, output })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// The last lines the process wrote on stderr.
    pub fn stderr_tail(&self) -> String {
        self.stderr_tail.lock().map(|t| t.iter().cloned().collect::<Vec<_>>().join("\n")).unwrap_or_default()
    }

    /// Everything the process wrote on stderr, and on stdout after its
    /// `listening on` line (at most 32 MiB), e.g. to search it for secrets.
    pub fn output(&self) -> String {
        self.output.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub async fn kill(mut self) -> anyhow::Result<()> {
        self.child.kill().await.with_context(|| format!("killing {}", self.name))
    }

    /// Asks the process to stop with SIGTERM and waits up to 10 s.
    pub async fn terminate(mut self) -> anyhow::Result<()> {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
        }
        match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => self.child.kill().await.context("did not stop on SIGTERM"),
        }
    }
}

/// Polls `$condition` (an async expression yielding `bool`) every 50 ms until
/// it holds, panicking with `$message` after `$within` (a `Duration`).
#[macro_export]
macro_rules! assert_eventually {
    ($condition:expr, $within:expr, $($message:tt)+) => {{
        let deadline = ::std::time::Instant::now() + $within;
        loop {
            if $condition {
                break;
            }
            if ::std::time::Instant::now() >= deadline {
                panic!($($message)+);
            }
            ::tokio::time::sleep(::std::time::Duration::from_millis(50)).await;
        }
    }};
}
