//! Replay files: a shrunk run as JSON: `{"sim", "seed", "options", "property", "safety_ms",
//! "allowed"}`. `skein-sim <sim> --replay FILE` runs it again and exits 1 if it still fails.
//!
//! Invariant: a file replays deterministically: the same build takes the same steps.

use serde_json::{json, Value};

use super::{Plan, Scenario};

/// A replayable run of scenario `S`.
#[derive(Debug, Clone)]
pub struct ReplayFile<S: Scenario> {
    /// The seed and switches.
    pub options: S::Options,
    /// The narrowing.
    pub plan: Plan,
    /// The violated property the run ends in (checked on replay).
    pub property: String,
}

impl<S: Scenario> ReplayFile<S> {
    /// JSON form.
    pub fn to_json(&self) -> String {
        let v = json!({
            "sim": S::NAME,
            "seed": S::seed(&self.options),
            "options": S::options_json(&self.options),
            "property": self.property,
            "safety_ms": self.plan.safety_ms,
            "allowed": self.plan.allowed.as_ref().map(|a| a.iter().copied().collect::<Vec<u64>>()),
        });
        serde_json::to_string_pretty(&v).expect("json") + "\n"
    }

    /// Parses the JSON form; a clear message on any mistake.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let obj = v.as_object().ok_or("expected a JSON object")?;
        match obj.get("sim").and_then(Value::as_str) {
            Some(name) if name == S::NAME => {}
            Some(name) => {
                return Err(format!(
                    "a replay file of the {name} simulation, not of {}",
                    S::NAME
                ))
            }
            None => return Err(format!("missing `sim` (expected {:?})", S::NAME)),
        }
        let seed = obj
            .get("seed")
            .and_then(Value::as_u64)
            .ok_or("`seed` must be a non-negative integer")?;
        let options = S::options_from_json(seed, obj.get("options").unwrap_or(&Value::Null))?;
        let safety_ms = match obj.get("safety_ms") {
            None | Some(Value::Null) => None,
            Some(x) => Some(
                x.as_u64()
                    .ok_or("`safety_ms` must be a non-negative integer")?,
            ),
        };
        let allowed = match obj.get("allowed") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|x| x.as_u64().ok_or("`allowed` must hold integers"))
                    .collect::<Result<_, _>>()?,
            ),
            Some(_) => return Err("`allowed` must be an array or null".into()),
        };
        Ok(ReplayFile {
            options,
            plan: Plan { allowed, safety_ms },
            property: obj
                .get("property")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        })
    }
}
