//! The deploy workflow's hygiene, which zizmor and actionlint do not check in full: only the
//! deploy jobs can mint a cloud token, each in its own environment, nothing runs from a branch
//! other than main, and every action is pinned to a commit.

use serde_yaml::Value;

fn workflow(name: &str) -> (String, Value) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.github/workflows")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("the workflow");
    let parsed = serde_yaml::from_str(&text).expect("YAML");
    (text, parsed)
}

#[test]
fn only_the_deploy_jobs_may_mint_a_token_each_in_its_own_environment_and_only_from_main() {
    let (_, deploy) = workflow("deploy.yml");
    assert!(
        deploy["permissions"]
            .as_mapping()
            .is_some_and(|p| p.is_empty()),
        "the workflow grants nothing by default: {:?}",
        deploy["permissions"]
    );
    let jobs = deploy["jobs"].as_mapping().expect("jobs");
    let mut environments = Vec::new();
    for (name, job) in jobs {
        let name = name.as_str().unwrap_or_default();
        assert_eq!(
            job["if"], "github.ref == 'refs/heads/main'",
            "{name}: a dispatch from another branch must not run it"
        );
        let token = &job["permissions"]["id-token"];
        match job["environment"].as_str() {
            Some(environment) => {
                assert_eq!(token, "write", "{name}");
                environments.push(environment.to_owned());
            }
            None => assert!(
                token.is_null(),
                "{name} has no environment but may mint a token"
            ),
        }
    }
    environments.sort();
    assert_eq!(environments, ["dev", "prod"]);
}

#[test]
fn every_action_is_pinned_to_a_commit_with_its_version_beside_it() {
    for name in ["ci.yml", "deploy.yml"] {
        let (text, _) = workflow(name);
        for line in text
            .lines()
            .filter(|l| l.trim_start().starts_with("- uses:"))
        {
            let reference = line.split("uses:").nth(1).unwrap_or_default().trim();
            let (action, rest) = reference.split_once('@').expect("action@ref");
            let (sha, comment) = rest.split_once(" # ").unwrap_or((rest, ""));
            assert!(
                sha.len() == 40 && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "{name}: {action} is not pinned to a commit: {line}"
            );
            assert!(
                !comment.trim().is_empty(),
                "{name}: {action} has no version comment"
            );
        }
    }
}
