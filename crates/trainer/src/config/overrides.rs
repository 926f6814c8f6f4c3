//! `--set key=value` overrides of a config, checked against the config's known keys.

use super::RunConfig;
use crate::TrainerError;

fn set_error(assignment: &str, message: impl Into<String>) -> TrainerError {
    TrainerError::Config {
        origin: format!("--set {assignment}"),
        message: message.into(),
    }
}

/// Parses `value` as a TOML value (number, bool, array, inline table, quoted string), or takes
/// it as a bare string.
fn parse_value(value: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()))
}

/// Applies each `key.path=value` to `table`. A key must exist in `base` (the same config, parsed
/// with every default filled in), so a typo is an error naming the keys that do exist.
pub fn apply_overrides(
    table: &mut toml::Table,
    base: &RunConfig,
    overrides: &[String],
) -> Result<(), TrainerError> {
    let mut known = toml::Table::try_from(base).expect("a RunConfig always serializes");
    // Optional keys a config may leave out (TOML has no null): still settable.
    let distillation = toml::Table::try_from(quant::qat::Distillation {
        weight: 0.5,
        temperature: 1.0,
    })
    .expect("a Distillation always serializes");
    let adaround = toml::Table::try_from(quant::qat::AdaRoundConfig::default())
        .expect("an AdaRoundConfig always serializes");
    let optional: [(&str, &str, toml::Value); 8] = [
        ("ptq", "adaround", toml::Value::Table(adaround)),
        ("qat", "observer_freeze_epoch", toml::Value::Integer(0)),
        ("qat", "bn_freeze_epoch", toml::Value::Integer(0)),
        ("qat", "distillation", toml::Value::Table(distillation)),
        ("data", "file", toml::Value::String(String::new())),
        ("data", "test_file", toml::Value::String(String::new())),
        ("data", "classes", toml::Value::Array(Vec::new())),
        ("data", "normalization", toml::Value::Array(Vec::new())),
    ];
    for (section, key, placeholder) in optional {
        if let Some(toml::Value::Table(table)) = known.get_mut(section) {
            table.entry(key).or_insert(placeholder);
        }
    }
    for assignment in overrides {
        let (key, value) = assignment.split_once('=').ok_or_else(|| {
            set_error(assignment, "expected key=value, e.g. --set train.epochs=3")
        })?;
        let parts: Vec<&str> = key.trim().split('.').collect();
        let mut known_level = &known;
        let mut level = &mut *table;
        for (i, part) in parts.iter().enumerate() {
            let Some(known_value) = known_level.get(*part) else {
                let keys: Vec<&str> = known_level.keys().map(String::as_str).collect();
                let parent = if i == 0 {
                    "the config".to_string()
                } else {
                    format!("`{}`", parts[..i].join("."))
                };
                return Err(set_error(
                    assignment,
                    format!("unknown key `{key}`; keys of {parent}: {}", keys.join(", ")),
                ));
            };
            if i + 1 == parts.len() {
                level.insert(part.to_string(), parse_value(value.trim()));
                break;
            }
            let toml::Value::Table(next_known) = known_value else {
                return Err(set_error(
                    assignment,
                    format!("`{}` is not a table", parts[..=i].join(".")),
                ));
            };
            known_level = next_known;
            let entry = level
                .entry(part.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(next) = entry else {
                return Err(set_error(
                    assignment,
                    format!("`{}` is not a table", parts[..=i].join(".")),
                ));
            };
            level = next;
        }
    }
    Ok(())
}
