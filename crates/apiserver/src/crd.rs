//! What a CustomResourceDefinition says about printing its resources.

use crate::table::PrinterColumn;
use weft_model::Snapshot;
use weft_model::kind::Resource;

/// The additionalPrinterColumns of a custom resource's version (None for built-in resources).
pub fn printer_columns(_snap: &Snapshot, _resource: &Resource) -> Option<Vec<PrinterColumn>> {
    None
}
