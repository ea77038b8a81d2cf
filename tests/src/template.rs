//! `template.yaml`, read as data: the local stack is provisioned from the same table, index,
//! TTL and queue settings that CloudFormation deploys, and tests assert its invariants.

use std::path::PathBuf;

use serde_yaml::Value;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub struct Template {
    root: Value,
}

/// A key of the table or of one of its indexes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPart {
    pub name: String,
    /// `HASH` or `RANGE`.
    pub kind: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSpec {
    pub name: String,
    pub keys: Vec<KeyPart>,
    pub projection: String,
}

/// What the local stack needs to build the jobs table like CloudFormation does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSpec {
    /// Attribute name and type (`S`, `N`, `B`).
    pub attributes: Vec<(String, String)>,
    pub keys: Vec<KeyPart>,
    pub indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<String>,
    /// `StreamSpecification.StreamViewType`, when the table has a stream.
    pub stream_view_type: Option<String>,
}

impl Template {
    pub fn path() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../template.yaml")
    }

    pub fn load() -> Result<Self, BoxError> {
        let path = Self::path();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Self {
            root: serde_yaml::from_str(&text)?,
        })
    }

    pub fn root(&self) -> &Value {
        &self.root
    }

    pub fn resource(&self, name: &str) -> &Value {
        &self.root["Resources"][name]
    }

    pub fn properties(&self, name: &str) -> &Value {
        &self.resource(name)["Properties"]
    }

    /// Logical names of the resources of one type, in template order.
    pub fn resources_of_type(&self, kind: &str) -> Vec<String> {
        self.root["Resources"]
            .as_mapping()
            .into_iter()
            .flatten()
            .filter(|(_, r)| r["Type"].as_str() == Some(kind))
            .filter_map(|(name, _)| name.as_str().map(str::to_owned))
            .collect()
    }

    /// A parameter's default, as text.
    pub fn parameter_default(&self, name: &str) -> Option<String> {
        scalar(&self.root["Parameters"][name]["Default"])
    }

    pub fn jobs_table(&self) -> Result<TableSpec, BoxError> {
        let table = self.properties("JobsTable");
        let keys = |value: &Value| -> Vec<KeyPart> {
            value
                .as_sequence()
                .into_iter()
                .flatten()
                .filter_map(|k| {
                    Some(KeyPart {
                        name: k["AttributeName"].as_str()?.to_owned(),
                        kind: k["KeyType"].as_str()?.to_owned(),
                    })
                })
                .collect()
        };
        let attributes = table["AttributeDefinitions"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                Some((
                    a["AttributeName"].as_str()?.to_owned(),
                    a["AttributeType"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let indexes = table["GlobalSecondaryIndexes"]
            .as_sequence()
            .into_iter()
            .flatten()
            .filter_map(|i| {
                Some(IndexSpec {
                    name: i["IndexName"].as_str()?.to_owned(),
                    keys: keys(&i["KeySchema"]),
                    projection: i["Projection"]["ProjectionType"]
                        .as_str()
                        .unwrap_or("ALL")
                        .to_owned(),
                })
            })
            .collect();
        let ttl = &table["TimeToLiveSpecification"];
        let spec = TableSpec {
            attributes,
            keys: keys(&table["KeySchema"]),
            indexes,
            ttl_attribute: (ttl["Enabled"].as_bool() == Some(true))
                .then(|| ttl["AttributeName"].as_str().map(str::to_owned))
                .flatten(),
            stream_view_type: table["StreamSpecification"]["StreamViewType"]
                .as_str()
                .map(str::to_owned),
        };
        if spec.keys.is_empty() || spec.attributes.is_empty() {
            return Err("template.yaml: JobsTable has no key schema".into());
        }
        Ok(spec)
    }

    /// The queue's `maxReceiveCount`, resolving a `!Ref` to its parameter's default.
    pub fn max_receive_count(&self) -> Result<u32, BoxError> {
        let value = &self.properties("JobsQueue")["RedrivePolicy"]["maxReceiveCount"];
        self.resolve(value)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "template.yaml: JobsQueue has no maxReceiveCount".into())
    }

    /// The queue's visibility timeout with the parameters at their defaults: a scalar, a
    /// `!Ref` or a `!Sub` of parameters (`"${WorkerTimeoutSeconds}0"`).
    pub fn queue_visibility_timeout(&self) -> Result<u32, BoxError> {
        let value = &self.properties("JobsQueue")["VisibilityTimeout"];
        let resolved = match value {
            Value::Tagged(tagged) if tagged.tag == "Sub" => {
                let mut text = tagged.value.as_str().unwrap_or_default().to_owned();
                while let Some(start) = text.find("${") {
                    let end = text[start..].find('}').map(|e| start + e);
                    let Some(end) = end else { break };
                    let name = &text[start + 2..end];
                    let default = self.parameter_default(name).unwrap_or_default();
                    text.replace_range(start..=end, &default);
                }
                Some(text)
            }
            other => self.resolve(other),
        };
        resolved
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| "template.yaml: JobsQueue has no VisibilityTimeout".into())
    }

    /// The notify pipe's filter patterns (JSON), as EventBridge Pipes applies them.
    pub fn pipe_filters(&self) -> Result<Vec<serde_json::Value>, BoxError> {
        let filters =
            &self.properties("NotifyPipe")["SourceParameters"]["FilterCriteria"]["Filters"];
        let patterns = filters
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|f| {
                let text = f["Pattern"].as_str().ok_or("a filter without a Pattern")?;
                Ok(serde_json::from_str(text)?)
            })
            .collect::<Result<Vec<_>, BoxError>>()?;
        if patterns.is_empty() {
            return Err("template.yaml: NotifyPipe has no filter".into());
        }
        Ok(patterns)
    }

    /// A scalar, or a `!Ref` to a parameter (its default).
    pub fn resolve(&self, value: &Value) -> Option<String> {
        match value {
            Value::Tagged(tagged) if tagged.tag == "Ref" => {
                self.parameter_default(tagged.value.as_str()?)
            }
            other => scalar(other),
        }
    }
}

fn scalar(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
