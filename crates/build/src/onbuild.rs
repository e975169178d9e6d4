//! ONBUILD: the triggers a stage inherits from its base image (config `OnBuild`) or base stage
//! (its ONBUILD instructions) run first in the stage, as BuildKit inserts them before the
//! stage's own instructions; the stage's image does not keep them.

use std::collections::BTreeMap;

use serde_json::Value;
use strata_dockerfile::{PlanOptions, PlannedStep, Platform as DfPlatform, Span};
use strata_oci::Platform;

use crate::BuildError;
use crate::state::StageState;

/// Name the triggers' synthetic stage starts from; its ENV is the inheriting stage's.
const BASE: &str = "strata-onbuild-base";

/// Removes the inherited triggers from `state`'s config and returns them.
pub fn take_triggers(state: &mut StageState) -> Vec<String> {
    match state.config.remove("OnBuild") {
        Some(Value::Array(list)) => list
            .into_iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// The triggers as planned steps: parsed like Dockerfile lines and substituted with the
/// stage's environment and the build args (ARGs in scope are only those the triggers
/// declare). Errors name the stage's FROM line, and every step carries that line.
pub fn plan_triggers(
    triggers: &[String],
    escape: char,
    state: &StageState,
    build_args: &BTreeMap<String, String>,
    from: Span,
) -> Result<Vec<PlannedStep>, BuildError> {
    if triggers.is_empty() {
        return Ok(Vec::new());
    }
    let mut text = String::new();
    if escape != '\\' {
        text.push_str(&format!("# escape={escape}\n"));
    }
    text.push_str(&format!("FROM {BASE}\n"));
    for trigger in triggers {
        text.push_str(trigger);
        text.push('\n');
    }
    let error = |message: String| BuildError::Step {
        line: from.line,
        instruction: "ONBUILD".into(),
        message,
    };
    let df = strata_dockerfile::parse(&text)
        .map_err(|e| error(format!("parsing the inherited triggers: {e}")))?;
    let host = Platform::host();
    let platform = DfPlatform {
        os: host.os.clone(),
        arch: host.architecture.clone(),
        variant: host.variant.clone(),
    };
    let options = PlanOptions {
        build_args: build_args.clone(),
        target: None,
        build_platform: platform.clone(),
        target_platform: platform,
        image_env: BTreeMap::from([(BASE.to_string(), state.env())]),
    };
    let plan = strata_dockerfile::plan(&df, &options)
        .map_err(|e| error(format!("planning the inherited triggers: {e}")))?;
    let stage = plan
        .stages
        .into_iter()
        .next()
        .ok_or_else(|| error("the inherited triggers planned no stage".into()))?;
    Ok(stage
        .steps
        .into_iter()
        .map(|mut step| {
            step.span = from;
            step
        })
        .collect())
}
