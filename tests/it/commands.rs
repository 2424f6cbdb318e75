//! The commands and files around the job: shell completions, the man page, the examples every
//! command's `--help` shows (the binary: clap prints help and usage errors itself), and the
//! Prometheus metrics file.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread")]
async fn completions_are_printed_for_each_shell() {
    let env = process_env_with(fast()).await;
    for (shell, marker) in [
        ("bash", "_greenrich()"),
        ("zsh", "#compdef greenrich"),
        ("fish", "complete -c greenrich"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let run = env.run(&["completions", shell]).await;
        assert_eq!(run.code, 0, "{shell}: {}", run.stderr);
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        assert!(
            run.stdout.contains("max-age"),
            "{shell} completes enrich's flags"
        );
    }
    let run = env.run(&["completions", "tcsh"]).await;
    // A usage error is exit 1, like every bad input (2 means some keys failed).
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("possible values: bash"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_man_page_is_roff_with_every_command() {
    let env = process_env_with(fast()).await;
    let run = env.run(&["man"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(".TH greenrich 1"), "{}", run.stdout);
    for command in ["enrich", "status", "failures", "export", "completions"] {
        assert!(run.stdout.contains(command), "{command} is in the man page");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_help_shows_examples_that_parse() {
    let env = process_env_with(fast()).await;
    let commands = [
        "enrich",
        "sandbox",
        "demo",
        "status",
        "failures",
        "export",
        "completions",
        "man",
    ];
    for command in commands {
        let run = env.run(&[command, "--help"]).await;
        assert_eq!(run.code, 0, "{command}: {}", run.stderr);
        let examples: Vec<&str> = run
            .stdout
            .lines()
            .map(str::trim)
            .filter(|line| line.starts_with("greenrich "))
            .collect();
        assert!(
            (2..=3).contains(&examples.len()),
            "{command}: two or three examples in {}",
            run.stdout
        );
        for example in examples {
            // The command line itself, without the shell's redirection or pipe.
            let line = example.split(['>', '|']).next().unwrap();
            let argv: Vec<&str> = line.split_whitespace().collect();
            let parsed = greenrich::parse(argv.iter().map(Into::into).collect());
            assert!(parsed.is_ok(), "{example}: {}", parsed.unwrap_err());
        }
    }
}

/// The samples of a Prometheus textfile, checked as the text format wants them: every sample's
/// metric has its `# HELP` and `# TYPE gauge` first, and every value is a number.
fn samples(text: &str) -> std::collections::HashMap<String, f64> {
    assert!(text.ends_with('\n'), "a whole file ends with a newline");
    let mut declared = std::collections::HashSet::new();
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            declared.insert(rest.split(' ').next().unwrap().to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            assert!(rest.ends_with(" gauge"), "{line}");
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect(line);
        let name = series.split('{').next().unwrap();
        assert!(declared.contains(name), "{name} has no # HELP");
        assert!(
            name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{name}"
        );
        samples.insert(series.to_string(), value.parse::<f64>().expect(line));
    }
    samples
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_file_follows_each_run_and_keeps_the_last_success() {
    let env = env_with(fast()).await;
    env.write("in.csv", phones_csv(10).as_bytes());
    let metrics = ["--metrics-file", "m.prom", "--max-age", "1d"];
    let run = env.enrich("in.csv", "out.db", &metrics).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let first = samples(&std::fs::read_to_string(env.path("m.prom")).unwrap());
    assert_eq!(first["greenrich_last_run_exit_code"], 0.0);
    assert_eq!(first["greenrich_last_run_keys{status=\"enriched\"}"], 10.0);
    assert_eq!(first["greenrich_store_contacts{freshness=\"fresh\"}"], 10.0);
    let answered: f64 = first
        .iter()
        .filter(|(k, _)| k.starts_with("greenrich_last_run_requests{") && k.contains("\"200\""))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(answered, 10.0);
    let success = first["greenrich_last_success_timestamp_seconds"];
    assert!((success - first["greenrich_last_run_timestamp_seconds"]).abs() < 5.0);
    assert!(!env.instances.split(',').any(|c| {
        let token = c.split(':').nth(1).unwrap();
        first.keys().any(|k| k.contains(token))
    }));

    // A partial run (exit 3) and a failed one (exit 1) update their own figures and keep the
    // last success.
    env.write("more.csv", phones_csv(20).as_bytes());
    let mut partial = metrics.to_vec();
    partial.extend(["--max-calls", "0"]);
    let run = env.enrich("more.csv", "out.db", &partial).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    let second = samples(&std::fs::read_to_string(env.path("m.prom")).unwrap());
    assert_eq!(second["greenrich_last_run_exit_code"], 3.0);
    assert_eq!(second["greenrich_last_run_keys{status=\"pending\"}"], 10.0);
    assert_eq!(second["greenrich_last_success_timestamp_seconds"], success);
    let run = env.enrich("missing.csv", "out.db", &metrics).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    let third = samples(&std::fs::read_to_string(env.path("m.prom")).unwrap());
    assert_eq!(third["greenrich_last_run_exit_code"], 1.0);
    assert_eq!(third["greenrich_last_success_timestamp_seconds"], success);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_metrics_file_is_never_seen_half_written() {
    let env = env_with(helpers_paced()).await;
    env.write("in.csv", phones_csv(60).as_bytes());
    let path = env.path("m.prom");
    let started = env.start_with_env(
        &enrich_args(
            "in.csv",
            "out.db",
            &[
                "--rps-per-instance",
                "20",
                "--metrics-file",
                "m.prom",
                "--status-interval",
                "20ms",
            ],
        ),
        &[],
    );
    let reader = std::thread::spawn(move || {
        let mut reads = 0;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            if let Ok(text) = std::fs::read_to_string(&path) {
                let found = samples(&text);
                assert!(found.contains_key("greenrich_last_run_duration_seconds"));
                reads += 1;
                if found.contains_key("greenrich_last_run_exit_code") {
                    return reads;
                }
            }
        }
        reads
    });
    let run = started.finish().await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reads = reader.join().unwrap();
    assert!(
        reads > 10,
        "the file was read while it was rewritten ({reads} reads)"
    );
    let leftovers: Vec<_> = std::fs::read_dir(env.path("."))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// A sandbox at 20 calls a second per instance: a run of 60 keys lasts most of a second.
fn helpers_paced() -> greenrich::sandbox::Config {
    greenrich::sandbox::Config {
        rate: greenrich::Rate::PerSecond(20.0),
        ..greenrich::sandbox::Config::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_gives_the_options_and_the_command_line_overrides_it() {
    let env = process_env_with(fast()).await;
    env.write("in.csv", phones_csv(20).as_bytes());
    env.write(
        "greenrich.toml",
        b"input = \"in.csv\"\noutput = \"out.db\"\ndefault-country = \"RU\"\nmax-calls = 3\n\
          metrics-file = \"m.prom\"\nrps-per-instance = 0\nbackoff-base = \"10ms\"\n",
    );
    let run = env
        .run(&["enrich", "--config", "greenrich.toml", "--max-calls", "5"])
        .await;
    assert_eq!(run.code, 3, "a spent budget: {}", run.stderr);
    assert_eq!(
        count(&env.path("out.db"), "SELECT COUNT(*) FROM contacts").await,
        5,
        "the command line's --max-calls won"
    );
    assert!(
        env.path("m.prom").exists(),
        "the file's metrics-file was used"
    );
    env.write("bad.toml", b"input = \"in.csv\"\nmax_calls = 3\n");
    let run = env.run(&["enrich", "--config", "bad.toml"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("bad.toml: unknown key 'max_calls'"),
        "{}",
        run.stderr
    );
}
