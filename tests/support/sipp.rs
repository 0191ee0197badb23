#![allow(dead_code)]
//! Runs the sipp scenarios of `tests/sipp/` from behaviour tests.
//!
//! ```ignore
//! let _callee = Sipp::uas("uas.xml", 5080).spawn();              // killed on drop
//! let out = Sipp::uac("uac.xml", "127.0.0.1:5060").calls(20).rate(10).run(Duration::from_secs(60));
//! out.assert_all_successful(20);
//! ```
//!
//! Everything is bounded: each sipp gets `-timeout <t>s -timeout_error`, and the runner kills
//! it if it outlives that. The outcome comes from sipp's exit code (0 = every call successful,
//! 1 = at least one failed, 97/99 = stopped without completing, 255/254 = fatal, e.g. a busy
//! port) and the last line of its `-trace_stat` CSV (cumulative SuccessfulCall/FailedCall).
//! The calls are blocking (std::process): from an async test use `run_async`/`wait_async`,
//! or `tokio::task::spawn_blocking`.
//!
//! Scenarios are looked up in `$CALLGATE_SIPP_DIR` if set, else in
//! `concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sipp/")` (the test binaries belong to the
//! `host/` crate); an absolute path is used as it is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Directory of the scenario files.
pub fn scenario_dir() -> PathBuf {
    match std::env::var_os("CALLGATE_SIPP_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/sipp/")),
    }
}

/// Panics with an install hint if `sipp` cannot be run.
pub fn require_sipp() {
    let ok = Command::new("sipp")
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    assert!(
        ok,
        "sipp is not installed (or not on PATH): apt-get install sip-tester"
    );
}

static RUN: AtomicU64 = AtomicU64::new(0);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Uac,
    Uas,
}

/// A sipp command line being built.
#[derive(Clone, Debug)]
pub struct Sipp {
    role: Role,
    scenario: PathBuf,
    local_port: u16,
    target: Option<String>,
    service: String,
    calls: Option<u64>,
    rate: Option<f64>,
    call_length_ms: Option<u64>,
    max_time: Duration,
    extra: Vec<String>,
}

/// How a sipp run ended.
#[derive(Clone, Debug)]
pub struct SippOutcome {
    /// sipp's exit code; `None` if it was killed (timeout or drop).
    pub exit_code: Option<i32>,
    /// Cumulative SuccessfulCall from the statistics file (0 if none was written).
    pub successful: u64,
    /// Cumulative FailedCall from the statistics file.
    pub failed: u64,
    /// True if the runner had to kill it after its time limit.
    pub killed: bool,
    /// The last event lines (or last lines) of sipp's stderr and error log, for messages.
    pub stderr_tail: String,
    /// Directory holding the statistics file and logs of this run.
    pub work_dir: PathBuf,
}

impl SippOutcome {
    /// Exit code 0 and exactly `calls` successful calls, none failed.
    pub fn assert_all_successful(&self, calls: u64) {
        assert!(
            self.exit_code == Some(0) && self.successful == calls && self.failed == 0,
            "sipp: expected {calls} successful calls and exit 0, got {self:?}"
        );
    }
    pub fn is_success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

impl Sipp {
    fn new(role: Role, scenario: &str, local_port: u16) -> Sipp {
        let path = Path::new(scenario);
        let scenario = if path.is_absolute() {
            path.to_path_buf()
        } else {
            scenario_dir().join(path)
        };
        assert!(
            scenario.is_file(),
            "sipp scenario not found: {}",
            scenario.display()
        );
        Sipp {
            role,
            scenario,
            local_port,
            target: None,
            service: "service".into(),
            calls: None,
            rate: None,
            call_length_ms: None,
            max_time: Duration::from_secs(120),
            extra: Vec::new(),
        }
    }

    /// A callee listening on 127.0.0.1:`port` (e.g. `uas.xml`, `uas_busy.xml`).
    pub fn uas(scenario: &str, port: u16) -> Sipp {
        Sipp::new(Role::Uas, scenario, port)
    }

    /// A caller sending to `target` ("127.0.0.1:5060"), from a free local port by default.
    pub fn uac(scenario: &str, target: impl ToString) -> Sipp {
        let mut s = Sipp::new(Role::Uac, scenario, 0);
        s.target = Some(target.to_string());
        s
    }

    /// Number of calls before sipp exits (`-m`); for a UAS, it exits after that many calls.
    pub fn calls(mut self, n: u64) -> Sipp {
        self.calls = Some(n);
        self
    }
    /// Calls per second (`-r`).
    pub fn rate(mut self, r: f64) -> Sipp {
        self.rate = Some(r);
        self
    }
    /// Length of the scenario's plain `<pause/>` (`-d`, milliseconds).
    pub fn call_length(mut self, d: Duration) -> Sipp {
        self.call_length_ms = Some(d.as_millis() as u64);
        self
    }
    /// User part of the Request-URI (`-s`).
    pub fn service(mut self, s: &str) -> Sipp {
        self.service = s.to_string();
        self
    }
    /// Local port (`-p`); 0 = let the runner pick a free one.
    pub fn local_port(mut self, port: u16) -> Sipp {
        self.local_port = port;
        self
    }
    /// Upper bound on the process's life for `spawn` (default 120 s); `run` uses its argument.
    pub fn max_time(mut self, t: Duration) -> Sipp {
        self.max_time = t;
        self
    }
    /// More sipp arguments, e.g. `["-lost", "10"]`.
    pub fn extra_args<I, S>(mut self, args: I) -> Sipp
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra.extend(args.into_iter().map(Into::into));
        self
    }

    fn command(&self, work_dir: &Path, limit: Duration) -> Command {
        let port = if self.local_port == 0 {
            free_udp_port()
        } else {
            self.local_port
        };
        let mut c = Command::new("sipp");
        c.current_dir(work_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work_dir.join("stderr.txt")).expect("sipp: stderr file"));
        c.arg("-sf").arg(&self.scenario);
        c.args(["-i", "127.0.0.1", "-p", &port.to_string(), "-nostdin"]);
        c.args([
            "-timeout",
            &format!("{}s", limit.as_secs().max(1)),
            "-timeout_error",
        ]);
        c.args(["-trace_stat", "-stf", "stat.csv", "-fd", "1"]);
        c.args(["-trace_err", "-error_file", "errors.log"]);
        if let Some(n) = self.calls {
            c.args(["-m", &n.to_string()]);
        }
        if let Some(r) = self.rate {
            c.args(["-r", &r.to_string()]);
        }
        if let Some(d) = self.call_length_ms {
            c.args(["-d", &d.to_string()]);
        }
        if self.role == Role::Uac {
            c.args(["-s", &self.service]);
        }
        c.args(&self.extra);
        if let Some(t) = &self.target {
            c.arg(t);
        }
        c
    }

    fn start(&self, limit: Duration) -> SippProcess {
        require_sipp();
        let work_dir = std::env::temp_dir().join(format!(
            "callgate-sipp-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&work_dir);
        std::fs::create_dir_all(&work_dir).expect("sipp: work dir");
        let child = self
            .command(&work_dir, limit)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start sipp ({e}): apt-get install sip-tester"));
        // sipp gets its own -timeout; the runner allows 10 s more before it kills.
        SippProcess {
            child: Some(child),
            deadline: Instant::now() + limit + Duration::from_secs(10),
            work_dir,
        }
    }

    /// Starts sipp in the background (typically a UAS); killed when the handle drops.
    /// Waits until its port is bound (up to 2 s), so a caller can start right away.
    pub fn spawn(self) -> SippProcess {
        let port = if self.local_port == 0 {
            free_udp_port()
        } else {
            self.local_port
        };
        let s = self.local_port(port);
        let mut p = s.start(s.max_time);
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until && !udp_port_bound(port) {
            if p.child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
                .is_some()
            {
                break; // exited early: the outcome will say why
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        p
    }

    /// Runs sipp to completion, at most `limit` (passed to sipp as `-timeout`).
    pub fn run(self, limit: Duration) -> SippOutcome {
        self.start(limit).wait(limit + Duration::from_secs(10))
    }

    /// `run` on a blocking thread, for async tests.
    pub async fn run_async(self, limit: Duration) -> SippOutcome {
        tokio::task::spawn_blocking(move || self.run(limit))
            .await
            .expect("sipp runner thread panicked")
    }

    /// The command line this would run (for messages and README examples).
    pub fn describe(&self) -> String {
        format!("{:?}", self.command(&std::env::temp_dir(), self.max_time))
    }
}

/// A running sipp; killed on drop.
pub struct SippProcess {
    child: Option<Child>,
    deadline: Instant,
    work_dir: PathBuf,
}

impl SippProcess {
    /// Waits for exit up to `limit` (and never past the process's own deadline), then kills.
    pub fn wait(mut self, limit: Duration) -> SippOutcome {
        let deadline = (Instant::now() + limit).min(self.deadline);
        let mut child = self.child.take().expect("sipp child present until waited");
        let mut status: Option<ExitStatus> = None;
        while Instant::now() < deadline {
            match child.try_wait() {
                Ok(Some(s)) => {
                    status = Some(s);
                    break;
                }
                Ok(None) => {}
                Err(_) => break, // killed and reaped below
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let killed = status.is_none();
        if killed {
            let _ = child.kill();
        }
        let _ = child.wait(); // reaps it (returns at once if try_wait already did)
        outcome(status.and_then(|s| s.code()), killed, &self.work_dir)
    }

    /// `wait` on a blocking thread, for async tests.
    pub async fn wait_async(self, limit: Duration) -> SippOutcome {
        tokio::task::spawn_blocking(move || self.wait(limit))
            .await
            .expect("sipp runner thread panicked")
    }

    /// Stops it now (SIGKILL) and reports what it had counted so far.
    pub fn stop(mut self) -> SippOutcome {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        outcome(None, true, &self.work_dir)
    }

    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }
}

impl Drop for SippProcess {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn outcome(exit_code: Option<i32>, killed: bool, work_dir: &Path) -> SippOutcome {
    let (successful, failed) = read_stats(&work_dir.join("stat.csv")).unwrap_or((0, 0));
    let mut tail = String::new();
    for f in ["stderr.txt", "errors.log"] {
        if let Ok(text) = std::fs::read_to_string(work_dir.join(f)) {
            // sipp's event lines start with a date; message dumps in between are skipped.
            let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let events: Vec<&str> = all
                .iter()
                .copied()
                .filter(|l| l.starts_with("20"))
                .collect();
            let lines = if events.is_empty() { all } else { events };
            let start = lines.len().saturating_sub(15);
            if start < lines.len() {
                tail += &format!("--- {f}\n{}\n", lines[start..].join("\n"));
            }
        }
    }
    SippOutcome {
        exit_code,
        successful,
        failed,
        killed,
        stderr_tail: tail,
        work_dir: work_dir.to_path_buf(),
    }
}

/// Cumulative (SuccessfulCall(C), FailedCall(C)) from the last line of a `-trace_stat` CSV.
pub fn read_stats(csv: &Path) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(csv).ok()?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let last: Vec<&str> = lines.next_back()?.split(';').collect();
    let col = |name: &str| header.iter().position(|h| h.trim() == name);
    let get = |name: &str| {
        col(name)
            .and_then(|i| last.get(i))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    Some((get("SuccessfulCall(C)")?, get("FailedCall(C)")?))
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    s.local_addr().expect("local_addr").port()
}

/// Whether something has bound UDP `port` (Linux: read from /proc/net/udp without touching
/// the port; elsewhere, assume yes after 300 ms).
pub fn udp_port_bound(port: u16) -> bool {
    match std::fs::read_to_string("/proc/net/udp") {
        Ok(table) => {
            let needle = format!(":{port:04X}");
            table.lines().skip(1).any(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(&needle))
            })
        }
        Err(_) => {
            std::thread::sleep(Duration::from_millis(300));
            true
        }
    }
}

/// `127.0.0.1:port` as a socket address.
pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
