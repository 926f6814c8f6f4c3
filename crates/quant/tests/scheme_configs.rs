//! The scheme files in `configs/schemes/` parse, validate, and equal the built-in presets;
//! unknown keys and bad values are rejected with the field named.
use quant::QuantMapping;

fn read(name: &str) -> String {
    let path = format!(
        "{}/../../configs/schemes/{name}.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn scheme_files_equal_the_presets() {
    for name in ["w8a8", "w4a8", "w4a4", "w2a8"] {
        let mapping: QuantMapping =
            toml::from_str(&read(name)).unwrap_or_else(|e| panic!("{name}.toml: {e}"));
        mapping.validate().unwrap();
        assert_eq!(
            mapping,
            QuantMapping::preset(name).unwrap(),
            "{name}.toml differs from the preset"
        );
    }
}

#[test]
fn bad_scheme_values_are_named() {
    let nine = read("w8a8").replacen("bits = 8", "bits = 9", 1);
    let mapping: QuantMapping = toml::from_str(&nine).unwrap();
    let err = mapping.validate().unwrap_err().to_string();
    assert_eq!(
        err,
        "invalid `weight.spec.bits`: 9 is not supported; use 2..=8 or 16"
    );
    let unknown = read("w8a8").replacen("kind = \"per_channel\"", "kind = \"per_row\"", 1);
    let err = toml::from_str::<QuantMapping>(&unknown)
        .unwrap_err()
        .to_string();
    assert!(err.contains("per_row"), "{err}");
}
