//! The commands around the job: shell completions, the man page, and the examples every
//! command's `--help` shows (the binary: clap prints help and usage errors itself).

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
            let parsed = <greenrich::cli::Cli as clap::Parser>::try_parse_from(&argv);
            assert!(parsed.is_ok(), "{example}: {}", parsed.unwrap_err());
        }
    }
}
