//! PURE Terraform knowledge: the `show -json` plan model, the plan summary and its fingerprint, the destroy guard, the argv of each command, the `-json` UI lines, which version a configuration asks for, and the OpenPGP check of a release's SHA256SUMS.
//!
//! Design note: nothing here starts a process or touches tokio; the adapter
//! (`crate::adapters::terraform`) runs what [`argv`] builds and feeds the lines to [`ui`].

pub mod argv;
pub mod model;
pub mod openpgp;
pub mod summary;
pub mod ui;
pub mod versions;

pub use model::{Change, Plan, ResourceChange};
pub use summary::{
    destroy_guard, Action, ActionCounts, DestroyBlocked, OutputSummary, PlanSummary,
};
