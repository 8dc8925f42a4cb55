//! The one error type of the crate.

use std::path::PathBuf;

/// What went wrong; every message names the domain, file or argument at fault.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// A state-reporting call was invalid (empty label, metadata of the wrong type, ...).
    #[error("state domain '{domain}': {what}")]
    State {
        /// The domain.
        domain: String,
        /// What was wrong.
        what: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file is not a trace file or is damaged beyond its first chunk.
    #[error("{}: {what}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// A bad argument (a window that ends before it starts, an unknown format, ...).
    #[error("{0}")]
    Usage(String),
}

impl TraceError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TraceError {
        let path = path.into();
        move |source| TraceError::Io { path, source }
    }
}
