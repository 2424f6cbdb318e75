//! The error of a run that could not start or had to stop: defined below the job that returns
//! it, above the stages whose own errors it gathers.

use crate::api::ClientError;
use crate::export::ExportError;
use crate::pipeline::output::OutputError;
use crate::pipeline::stage::StageError;
use crate::pipeline::task::TaskDied;
use crate::source::SourceError;
use crate::store::StoreError;

/// A run that could not start or had to stop with an error.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The input cannot be read.
    #[error("{0}")]
    Input(#[from] SourceError),
    /// The store cannot be opened or written.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The output location cannot be used.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The HTTP client cannot be built.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The CSV files cannot be written.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// A task of the pipeline died.
    #[error(transparent)]
    Task(#[from] TaskDied),
    /// Nearly every value of the column read is invalid: the column, delimiter or encoding is
    /// probably wrong.
    #[error("{0}")]
    MostlyInvalid(String),
}

impl From<StageError> for JobError {
    fn from(e: StageError) -> Self {
        match e {
            StageError::Input(e) => JobError::Input(e),
            StageError::Store(e) => JobError::Store(e),
            StageError::Task(e) => JobError::Task(e),
            StageError::MostlyInvalid(message) => JobError::MostlyInvalid(message),
        }
    }
}
