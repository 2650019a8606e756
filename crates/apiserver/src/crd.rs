//! What a CustomResourceDefinition says about printing its resources.

use crate::table::PrinterColumn;
use weft_model::Snapshot;
use weft_model::kind::{Resource, builtin};

/// The columns of a custom resource's version (its additionalPrinterColumns; none declared: Name and Age);
/// None for built-in resources, which have printers of their own.
pub fn printer_columns(snap: &Snapshot, resource: &Resource) -> Option<Vec<PrinterColumn>> {
    if builtin().iter().any(|r| r.group == resource.group && r.kind == resource.kind) {
        return None;
    }
    Some(
        crate::registry::definition(snap, &resource.group, &resource.kind)
            .map(|crd| PrinterColumn::from_crd(&crd, &resource.version))
            .unwrap_or_default(),
    )
}
