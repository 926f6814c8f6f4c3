//! What a run reports: `report.json` / `report.md`, classification reports, training curves.
mod classification;
mod curves;
mod run_report;

pub use classification::*;
pub use curves::*;
pub use run_report::*;
