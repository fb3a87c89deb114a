//! Why a bench run could not be carried out. Errors of single operations are not here: they
//! are counted in the run's summary (`errors`, `first_error`).

use std::path::PathBuf;

/// Why a bench command failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Options(String),
    #[error("connect: {0}")]
    Connect(#[from] client::ClientError),
    #[error("{what}: {:?}: {}", status.code(), status.message())]
    Rpc {
        what: &'static str,
        status: tonic::Status,
    },
    #[error("{what}: {source}")]
    Client {
        what: &'static str,
        #[source]
        source: client::ClientError,
    },
    #[error("open a watch: {0}")]
    Watch(&'static str),
    #[error("{what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("measure the floor: {0}")]
    Floor(#[source] std::io::Error),
    #[error("{at}: {problem}")]
    Summary { at: String, problem: String },
    #[error("a task of the run ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl BenchError {
    /// The error of file operation `what` on `path`, for `map_err`.
    pub(crate) fn file(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> BenchError {
        let path = path.to_owned();
        move |source| BenchError::File { what, path, source }
    }

    /// A failed call of the preparation (bucket, fill, watch), which the run cannot go without.
    pub(crate) fn rpc(what: &'static str) -> impl FnOnce(tonic::Status) -> BenchError {
        move |status| BenchError::Rpc { what, status }
    }
}
