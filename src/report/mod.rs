//! Pure rendering of what gantry tells people and the runner: workflow commands, outputs, the job summary, the pull-request comment and the GitHub records.

pub mod comment;
pub mod markdown;
pub mod records;
pub mod summary;
pub mod workflow;
