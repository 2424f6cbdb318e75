//! `greenrich enrich --config FILE`: a TOML file whose keys are `enrich`'s long option names
//! (`input`, `max-age`, `rps-per-instance`, ...) with the values the command line takes. Its keys
//! become those flags, placed before the command line's own, which therefore override them.
//! Secrets stay in the environment: a key or value that looks like one is refused.

use std::ffi::{OsStr, OsString};
use std::path::Path;

use clap::CommandFactory;

use crate::cli::Cli;
use crate::source::server_url::url_password;

/// The arguments with `enrich --config FILE` replaced by the flags the file holds; other
/// arguments as they are. The error names the file and the key.
pub(crate) fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(enrich) = args.iter().position(|a| a == "enrich") else {
        return Ok(args);
    };
    let mut rest = Vec::new();
    let mut file = None;
    let mut tail = args[enrich + 1..].iter();
    while let Some(arg) = tail.next() {
        let text = arg.to_string_lossy();
        if text == "--config" {
            let Some(path) = tail.next() else {
                return Err("--config needs a file".into());
            };
            file = Some(path.clone());
        } else if let Some(path) = text.strip_prefix("--config=") {
            file = Some(OsString::from(path));
        } else {
            rest.push(arg.clone());
        }
    }
    let Some(file) = file else {
        return Ok(args);
    };
    let path = Path::new(&file);
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
    let flags = flags_of(&text, &path.display().to_string())?;
    let mut expanded: Vec<OsString> = args[..=enrich].to_vec();
    expanded.extend(flags.into_iter().map(OsString::from));
    expanded.extend(rest);
    Ok(expanded)
}

/// The `enrich` flags a config file's `text` stands for (`shown` names it in errors).
fn flags_of(text: &str, shown: &str) -> Result<Vec<String>, String> {
    let table: toml::Table =
        toml::from_str(text).map_err(|e| format!("{shown} is not valid TOML: {e}"))?;
    let mut cli = Cli::command();
    let enrich = cli
        .find_subcommand_mut("enrich")
        .ok_or("the enrich command is missing")?
        .clone();
    let mut flags = Vec::new();
    for (key, value) in &table {
        let Some(arg) = enrich
            .get_arguments()
            .find(|a| a.get_long() == Some(key.as_str()) && key != "config")
        else {
            return Err(unknown_key(key, shown));
        };
        let takes_value = arg.get_num_args().is_some_and(|n| n.takes_values());
        let values: Vec<String> = match value {
            toml::Value::Boolean(on) if !takes_value => {
                if *on {
                    flags.push(format!("--{key}"));
                }
                continue;
            }
            toml::Value::Array(items) => items.iter().map(scalar).collect::<Option<_>>(),
            other => scalar(other).map(|v| vec![v]),
        }
        .ok_or_else(|| format!("{shown}: key '{key}' needs a string, a number or a boolean"))?;
        for value in values {
            refuse_secret(key, &value, shown)?;
            // The flag alone, parsed as the command line would parse it.
            clap::Command::new("greenrich")
                .arg(arg.clone().required(false))
                .try_get_matches_from([
                    OsStr::new("greenrich"),
                    OsStr::new(&format!("--{key}")),
                    OsStr::new(&value),
                ])
                .map_err(|e| {
                    let message = e.to_string();
                    let first = message.lines().next().unwrap_or_default();
                    format!(
                        "{shown}: key '{key}': {}",
                        first.trim_start_matches("error: ")
                    )
                })?;
            flags.push(format!("--{key}"));
            flags.push(value);
        }
    }
    Ok(flags)
}

/// A plain TOML value as the command line would spell it.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(n) => Some(n.to_string()),
        toml::Value::Float(x) => Some(x.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn unknown_key(key: &str, shown: &str) -> String {
    let lowered = key.to_ascii_lowercase();
    if ["token", "password", "secret", "instances"]
        .iter()
        .any(|s| lowered.contains(s))
    {
        return format!(
            "{shown}: key '{key}' looks like a secret, and secrets stay in the environment: set GREEN_API_INSTANCES (or GREEN_API_ID_INSTANCE and GREEN_API_TOKEN_INSTANCE) in the environment of the job, for example in a systemd EnvironmentFile readable by its user only"
        );
    }
    format!("{shown}: unknown key '{key}'; the keys are the long options of `greenrich enrich` (input, output, default-country, max-age, rps-per-instance, metrics-file, ...)")
}

/// Refuses a value holding a password (a URL with `user:password@`).
fn refuse_secret(key: &str, value: &str, shown: &str) -> Result<(), String> {
    if url_password(value).is_some() {
        return Err(format!(
            "{shown}: key '{key}' holds a password, and secrets stay out of config files: leave it out of the URL and give it to the server's client another way (for PostgreSQL, ~/.pgpass of the job's user), or pass the whole URL on the command line from the environment (--{key} \"$CRM_URL\")"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand_with(file: &str, args: &[&str]) -> Result<Vec<String>, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("greenrich.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv: Vec<OsString> = vec!["greenrich".into(), "enrich".into()];
        argv.push("--config".into());
        argv.push(path.clone().into());
        argv.extend(args.iter().map(OsString::from));
        expand(argv).map(|a| a.iter().map(|s| s.to_string_lossy().into_owned()).collect())
    }

    #[test]
    fn every_kind_of_value_becomes_its_flag() {
        let args = expand_with(
            r#"
input = "customers.csv"
output = "/var/lib/greenrich/out.db"
default-country = "RU"
max-age = "7d"
rps-per-instance = 0.5
max-calls = 100
dry-run = true
no-preflight = false
"#,
            &[],
        )
        .unwrap();
        let joined = args.join(" ");
        for expected in [
            "--input customers.csv",
            "--output /var/lib/greenrich/out.db",
            "--default-country RU",
            "--max-age 7d",
            "--rps-per-instance 0.5",
            "--max-calls 100",
            "--dry-run",
        ] {
            assert!(joined.contains(expected), "{expected}: {joined}");
        }
        assert!(
            !joined.contains("no-preflight"),
            "false leaves a switch off"
        );
        let cli = <Cli as clap::Parser>::try_parse_from(&args).unwrap();
        let crate::cli::Command::Enrich(enrich) = cli.command else {
            panic!("not enrich")
        };
        assert_eq!(enrich.max_calls, Some(100));
    }

    #[test]
    fn a_list_repeats_its_flag() {
        // No option of enrich takes several values today; a list gives its flag once per item,
        // as repeating it on the command line would (the last one counts).
        let args = expand_with("column = [\"phone\", \"mobile\"]\n", &[]).unwrap();
        assert_eq!(
            args[2..],
            ["--column", "phone", "--column", "mobile"].map(String::from)
        );
    }

    #[test]
    fn the_command_line_overrides_the_file() {
        let args = expand_with(
            "input = \"a.csv\"\noutput = \"o.db\"\nmax-calls = 100\n",
            &["--max-calls", "5"],
        )
        .unwrap();
        let cli = <Cli as clap::Parser>::try_parse_from(&args).unwrap();
        let crate::cli::Command::Enrich(enrich) = cli.command else {
            panic!("not enrich")
        };
        assert_eq!(enrich.max_calls, Some(5));
        assert!(
            matches!(&enrich.input, crate::cli::InputLocation::File(p) if p.as_os_str() == "a.csv")
        );
    }

    #[test]
    fn unknown_keys_bad_values_and_secrets_are_refused_by_name() {
        for (file, says) in [
            ("max_age = \"7d\"\n", "unknown key 'max_age'"),
            ("max-age = \"a week\"\n", "key 'max-age'"),
            ("max-calls = \"many\"\n", "key 'max-calls'"),
            ("token = \"abc\"\n", "stay in the environment"),
            ("api-token-instance = \"abc\"\n", "GREEN_API_INSTANCES"),
            (
                "input = \"postgres://crm:hunter2@db/crm\"\n",
                "holds a password",
            ),
            (
                "output = \"postgres://crm@db/crm?sslmode=require&password=hunter2\"\n",
                "holds a password",
            ),
            ("input = [", "not valid TOML"),
        ] {
            let err = expand_with(file, &[]).unwrap_err();
            assert!(err.contains(says), "{file}: {err}");
            assert!(err.contains("greenrich.toml"), "names the file: {err}");
            assert!(!err.contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn arguments_without_a_config_file_are_left_alone() {
        let args: Vec<OsString> = ["greenrich", "status", "--db", "x.db"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(expand(args.clone()).unwrap(), args);
    }
}
