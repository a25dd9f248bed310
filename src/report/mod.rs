//! Pure rendering of what gantry tells people and the runner: workflow commands, outputs and the job summary.

pub mod summary;
pub mod workflow;
