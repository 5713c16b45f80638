use std::io;

/// Errors of the engine, its sources and its sinks. The distinction that
/// matters to the user is input (exit 2) against runtime (exit 1).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The user asked for something that cannot be: bad hook, interface,
    /// file, option. Reported in one line, exit code 2.
    #[error("{0}")]
    Input(String),
    /// Something failed while capturing. Exit code 1.
    #[error("{0}")]
    Runtime(String),
    /// The reader of our output went away (closed pipe): stop quietly.
    #[error("output closed")]
    Closed,
}

impl Error {
    pub fn input(msg: impl Into<String>) -> Self {
        Error::Input(msg.into())
    }
    pub fn runtime(msg: impl Into<String>) -> Self {
        Error::Runtime(msg.into())
    }
    /// Map a write error: a closed pipe is a normal way to stop.
    pub fn from_write(e: io::Error, what: &str) -> Self {
        if e.kind() == io::ErrorKind::BrokenPipe {
            Error::Closed
        } else {
            // "No space left on device", without Rust's " (os error 28)".
            let text = e.to_string();
            let reason = text.split(" (os error ").next().unwrap_or(&text);
            Error::Runtime(format!("{what}: {reason}"))
        }
    }
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => 2,
            Error::Runtime(_) => 1,
            Error::Closed => 0,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
