//! Running the external tools and turning their failures into [`Error`]s people can act on.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// A program and what to install when it is missing.
#[derive(Clone, Debug)]
pub(crate) struct Tool {
    pub program: PathBuf,
    pub install: &'static str,
}

impl Tool {
    pub fn new(program: impl Into<PathBuf>, install: &'static str) -> Self {
        Self {
            program: program.into(),
            install,
        }
    }

    fn missing(&self) -> Error {
        Error::MissingTool {
            tool: self.program.display().to_string(),
            install: self.install.to_owned(),
        }
    }

    /// A command for this tool.
    pub fn command(&self) -> Command {
        Command::new(&self.program)
    }

    /// Runs the tool; on failure `hint` may name a likely cause from its output. Returns standard
    /// output.
    pub fn run(
        &self,
        cmd: &mut Command,
        hint: impl Fn(&str) -> Option<String>,
    ) -> Result<String, Error> {
        let out = cmd.output().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => self.missing(),
            _ => Error::Io {
                path: self.program.clone(),
                source: e,
            },
        })?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        if out.status.success() {
            return Ok(stdout);
        }
        let output = format!("{}{stdout}", String::from_utf8_lossy(&out.stderr));
        Err(Error::Failed {
            command: describe(cmd),
            status: out.status,
            hint: hint(&output),
            output,
        })
    }

    /// The tool's version text (`<tool> --version`), trimmed: part of the build's digest, so that a
    /// new tool rebuilds.
    pub fn version(&self) -> Result<String, Error> {
        let mut cmd = self.command();
        cmd.arg("--version");
        Ok(self.run(&mut cmd, |_| None)?.trim().to_owned())
    }
}

/// The command line, for error messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first `name` on `PATH`, if any.
pub(crate) fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}
