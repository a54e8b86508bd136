//! Errors of the end-to-end harness: every variant names the object it was
//! working on and why it failed, with the OS or library cause as `source`.

use std::io;

/// Everything that can go wrong while building a topology or measuring.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// An external command ran but reported failure.
    #[error("`{cmd}` failed: {stderr}")]
    Command {
        /// The command line.
        cmd: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// An external command could not be started at all.
    #[error("cannot run `{cmd}`")]
    Spawn {
        /// The command line.
        cmd: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A system call or file operation on a named object failed.
    #[error("{object}: {op} failed")]
    Io {
        /// The object (`netns "vsb1c1"`, `interface "vsb1h1"`).
        object: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// Our in-process switch refused a configuration call.
    #[error("switch under test \"{switch}\": {op} failed")]
    Switch {
        /// The switch under test.
        switch: String,
        /// What was being done.
        op: &'static str,
        /// The datapath's error.
        #[source]
        source: datapath::switch::SwitchError,
    },
    /// A port backend could not be opened.
    #[error("port \"{port}\": cannot open")]
    Port {
        /// The port name.
        port: String,
        /// The backend's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A tool's output did not contain what was expected.
    #[error("{what}: cannot parse output: {reason}")]
    Parse {
        /// The tool or file.
        what: String,
        /// What was wrong.
        reason: String,
    },
    /// A bounded wait ran out.
    #[error("{what}: timed out after {secs} s")]
    Timeout {
        /// What was waited for.
        what: String,
        /// The bound.
        secs: u64,
    },
    /// The topology was built but c1 cannot reach c2.
    #[error("switch under test \"{0}\": no connectivity from c1 to c2")]
    NoConnectivity(String),
    /// The user pressed Ctrl-C (or sent SIGTERM).
    #[error("interrupted")]
    Interrupted,
    /// A topology could not be set up (the message says what and why).
    #[error("setup: {0}")]
    Setup(String),
}

impl BenchError {
    /// Wraps an I/O error on a named object.
    pub fn io(object: impl Into<String>, op: &'static str, source: io::Error) -> BenchError {
        BenchError::Io {
            object: object.into(),
            op,
            source,
        }
    }
}

/// Result alias of the harness.
pub type Result<T> = std::result::Result<T, BenchError>;
