//! What a run reports: `report.json` / `report.md`, classification reports, entity-level
//! (NER) reports, training curves.
mod classification;
mod curves;
mod entities;
mod run_report;

pub use classification::*;
pub use curves::*;
pub use entities::*;
pub use run_report::*;
