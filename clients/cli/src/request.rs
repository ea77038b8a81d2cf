//! What `haul get` asks the server for: one file, or a batch of them (as one zip or not), with
//! a priority when one is given; the initiate body of each.

use serde_json::{Value, json};

use crate::state::Subject;

/// `priority` at initiate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Priority {
    High,
    Normal,
    Low,
}

impl Priority {
    pub fn name(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// What `haul get` asks for, from its file ids and `--zip`: `None` without ids.
pub fn subject_of(file_ids: &[u64], zip: bool) -> Option<Subject> {
    match file_ids {
        [] => None,
        [one] if !zip => Some(Subject::File(*one)),
        ids => Some(Subject::Batch {
            file_ids: ids.to_vec(),
            zip,
        }),
    }
}

/// The body of `POST /v1/download/initiate` for a subject.
pub fn initiate_body(subject: &Subject, priority: Option<Priority>) -> Value {
    let mut body = match subject {
        Subject::File(id) => json!({ "file_id": id }),
        Subject::Batch { file_ids, zip } => {
            let mut body = json!({ "file_ids": file_ids });
            if *zip {
                body["bundle"] = json!("zip");
            }
            body
        }
    };
    if let Some(priority) = priority {
        body["priority"] = json!(priority.name());
    }
    body
}

/// What the user calls the subject in notes: `file 7`, `files 1, 5, 9 (as one zip)`.
pub fn describe_subject(subject: &Subject) -> String {
    match subject {
        Subject::File(id) => format!("file {id}"),
        Subject::Batch { file_ids, zip } => {
            let ids: Vec<String> = file_ids.iter().map(u64::to_string).collect();
            let zip = if *zip { " (as one zip)" } else { "" };
            format!("files {}{zip}", ids.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_id_is_a_file_several_a_batch() {
        assert_eq!(subject_of(&[], false), None);
        assert_eq!(subject_of(&[7], false), Some(Subject::File(7)));
        assert_eq!(
            subject_of(&[7], true),
            Some(Subject::Batch {
                file_ids: vec![7],
                zip: true
            })
        );
        assert_eq!(
            subject_of(&[1, 5, 9], false),
            Some(Subject::Batch {
                file_ids: vec![1, 5, 9],
                zip: false
            })
        );
    }

    #[test]
    fn initiate_bodies() {
        let batch = |zip| Subject::Batch {
            file_ids: vec![1, 5, 9],
            zip,
        };
        assert_eq!(
            initiate_body(&Subject::File(7), None),
            json!({"file_id": 7})
        );
        assert_eq!(
            initiate_body(&batch(false), None),
            json!({"file_ids": [1, 5, 9]})
        );
        assert_eq!(
            initiate_body(&batch(true), Some(Priority::High)),
            json!({"file_ids": [1, 5, 9], "bundle": "zip", "priority": "high"})
        );
        assert_eq!(
            initiate_body(&Subject::File(7), Some(Priority::Low)),
            json!({"file_id": 7, "priority": "low"})
        );
        assert_eq!(describe_subject(&batch(true)), "files 1, 5, 9 (as one zip)");
        assert_eq!(describe_subject(&Subject::File(3)), "file 3");
    }
}
