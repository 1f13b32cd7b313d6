use std::time::Duration;

use cache_runtime::TtlPreset;

// Not a preset name: refused when the constant is evaluated.
const CATALOG: TtlPreset = TtlPreset::new("Catalog Page", Duration::from_secs(60));

fn main() {
    let _ = CATALOG;
}
