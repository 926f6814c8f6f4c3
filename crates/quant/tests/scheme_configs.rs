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

/// `configs/schemes/*-entropy.toml`: the preset with activations observed by the entropy
/// calibrator, except the network input, which keeps the preset's quantizer.
#[test]
fn entropy_scheme_files_swap_only_the_activation_observer() {
    for name in ["w8a8", "w4a8", "w4a4"] {
        let file = format!("{name}-entropy");
        let mapping: QuantMapping =
            toml::from_str(&read(&file)).unwrap_or_else(|e| panic!("{file}.toml: {e}"));
        mapping.validate().unwrap();
        let mut expected = QuantMapping::preset(name).unwrap();
        let preset_activation = expected.activation.clone();
        expected.activation.as_mut().unwrap().observer = quant::ObserverKind::Entropy {
            bins: 2048,
            averaging_constant: 0.1,
        };
        expected.rules.push(quant::QuantRule {
            pattern: Some(r"^input_quant\.quant$".into()),
            layer: None,
            rank: None,
            weight: None,
            activation: preset_activation,
            float: false,
        });
        assert_eq!(mapping, expected, "{file}.toml");
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

#[test]
fn first_last_8bit_scheme_sets_weights_and_activations_by_path() {
    use quant::LayerKind;
    let mapping: QuantMapping = toml::from_str(&read("w4a4-first-last-8bit")).unwrap();
    mapping.validate().unwrap();
    let w = |path: &str, kind, rank| mapping.weight_for(path, kind, rank).map(|c| c.spec.bits);
    let a = |path: &str| {
        mapping
            .activation_for(path, LayerKind::ActivationNchw, 4)
            .map(|c| c.spec.bits)
    };
    assert_eq!(w("conv1.weight", LayerKind::Conv2d, 4), Some(8));
    assert_eq!(w("conv2.weight", LayerKind::Conv2d, 4), Some(4));
    assert_eq!(w("fc1.weight", LayerKind::Linear, 2), Some(4));
    assert_eq!(w("fc2.weight", LayerKind::Linear, 2), Some(8));
    assert_eq!(w("stem.weight", LayerKind::Conv2d, 4), Some(8));
    assert_eq!(w("blocks.0.conv1.weight", LayerKind::Conv2d, 4), Some(4));
    assert_eq!(a("input_quant.quant"), Some(8));
    assert_eq!(a("conv1.output_quant"), Some(4));
    assert_eq!(a("fc1.output_quant"), Some(8));
    assert_eq!(a("pool.output_quant"), Some(8));
}

/// `w4a4-lstm-cell{8,16}.toml`: W4A4 with every LSTM layer's cell state at 8 or 16 bits,
/// nothing else changed.
#[test]
fn lstm_cell_schemes_change_only_the_cell_states() {
    use quant::LayerKind;
    for cell_bits in [8, 16] {
        let mapping: QuantMapping =
            toml::from_str(&read(&format!("w4a4-lstm-cell{cell_bits}"))).unwrap();
        mapping.validate().unwrap();
        let w4a4 = QuantMapping::w4a4();
        assert_eq!(
            (&mapping.weight, &mapping.activation),
            (&w4a4.weight, &w4a4.activation)
        );
        let bits = |path: &str| {
            mapping
                .activation_for(path, LayerKind::Activation, 2)
                .map(|c| c.spec.bits)
        };
        assert_eq!(bits("lstm.0.cell_quant"), Some(cell_bits));
        assert_eq!(bits("lstm.3.cell_quant"), Some(cell_bits));
        assert_eq!(bits("lstm.0.cell_tanh_quant"), Some(4));
        assert_eq!(bits("lstm.0.gates_quant"), Some(4));
        assert_eq!(bits("input_quant.quant"), Some(4));
    }
}

#[test]
fn a_float_rule_keeps_a_path_unquantized_and_later_rules_win() {
    use quant::{LayerKind, QuantRule};
    let float_fc = QuantRule {
        pattern: Some("^fc2\\.".into()),
        layer: None,
        rank: None,
        weight: None,
        activation: None,
        float: true,
    };
    let mapping = QuantMapping::w8a8().with_rules(vec![float_fc.clone()]);
    assert!(
        mapping
            .weight_for("fc2.weight", LayerKind::Linear, 2)
            .is_none()
    );
    assert!(
        mapping
            .activation_for("fc2.output_quant", LayerKind::Linear, 2)
            .is_none()
    );
    assert!(
        mapping
            .weight_for("fc1.weight", LayerKind::Linear, 2)
            .is_some()
    );
    // A later rule re-enables the weight only.
    let again = QuantRule {
        float: false,
        weight: QuantMapping::w4a8().weight,
        ..float_fc
    };
    let mapping = mapping.with_rules(vec![
        QuantRule {
            pattern: Some("^fc2\\.".into()),
            layer: None,
            rank: None,
            weight: None,
            activation: None,
            float: true,
        },
        again,
    ]);
    assert_eq!(
        mapping
            .weight_for("fc2.weight", LayerKind::Linear, 2)
            .map(|c| c.spec.bits),
        Some(4)
    );
    assert!(
        mapping
            .activation_for("fc2.output_quant", LayerKind::Linear, 2)
            .is_none()
    );
    let bad = QuantMapping::w8a8().with_rules(vec![QuantRule {
        pattern: None,
        layer: None,
        rank: None,
        weight: QuantMapping::w8a8().weight,
        activation: None,
        float: true,
    }]);
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("rules[0].float")
    );
}
