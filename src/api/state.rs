//! `getStateInstance` answers: the instance's state, and what a person should do about it (pure).

use serde_json::Value;

/// The state of an instance, as `getStateInstance` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InstanceState {
    /// Ready for calls.
    Authorized,
    /// Restarting: calls will wait for it.
    Starting,
    /// Any other state (`notAuthorized`, `blocked`, `sleepMode`, ...): not usable.
    Unusable(String),
}

impl InstanceState {
    /// Reads `{"stateInstance": "..."}`.
    pub(crate) fn parse(answer: &serde_json::Map<String, Value>) -> InstanceState {
        match answer.get("stateInstance").and_then(Value::as_str) {
            Some("authorized") => InstanceState::Authorized,
            Some("starting") => InstanceState::Starting,
            other => InstanceState::Unusable(other.unwrap_or_default().to_string()),
        }
    }
}

/// What to do about an unusable state, in one sentence.
pub(crate) fn advice(state: &str) -> String {
    let advice = match state {
        "notAuthorized" => {
            "not authorized: scan the QR code in the GREEN-API console to link the phone"
        }
        "blocked" => "blocked: the account is banned; use another instance",
        "sleepMode" => "in sleep mode: open the messenger on the phone to wake it",
        "yellowCard" => "has a yellow card (suspected spam): pause it for a while",
        "suspended" => "suspended: check the account in the console",
        _ => "not usable",
    };
    format!("state '{state}', {advice}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(body: &str) -> InstanceState {
        match serde_json::from_str(body).unwrap() {
            Value::Object(o) => InstanceState::parse(&o),
            _ => unreachable!(),
        }
    }

    #[test]
    fn states_parse_with_advice() {
        assert_eq!(
            state(r#"{"stateInstance":"authorized"}"#),
            InstanceState::Authorized
        );
        assert_eq!(
            state(r#"{"stateInstance":"starting"}"#),
            InstanceState::Starting
        );
        assert_eq!(
            state(r#"{"stateInstance":"sleepMode"}"#),
            InstanceState::Unusable("sleepMode".into())
        );
        assert_eq!(state("{}"), InstanceState::Unusable(String::new()));
        assert!(advice("notAuthorized").contains("scan the QR code"));
    }
}
