//! Everything a test binary logs, kept in memory: the subscriber is process-wide because plugin
//! work runs on blocking and worker threads a thread-local subscriber would miss. Tests pick out
//! their own lines by something unique to them (a path, a digest, a header value).
#![allow(dead_code)]

use std::sync::{Mutex, Once};

static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// Installs the capturing subscriber (INFO and above), once per test binary.
pub fn capture() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        tracing_subscriber::fmt()
            .with_writer(|| Capture)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .init();
    });
}

/// All lines logged so far.
pub fn text() -> String {
    String::from_utf8_lossy(&LOG.lock().unwrap()).into_owned()
}

struct Capture;

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
