use std::collections::BTreeMap;

use crate::model::Name;

/// A label selector of an `aggregationRule` (matchLabels and matchExpressions).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    In(Name, Vec<Name>),
    NotIn(Name, Vec<Name>),
    Exists(Name),
    DoesNotExist(Name),
}

impl LabelSelector {
    /// As `metav1.LabelSelectorAsSelector`: an empty selector matches
    /// everything, which is what the aggregation controller does with it.
    pub fn matches(&self, labels: &BTreeMap<Name, Name>) -> bool {
        self.requirements.iter().all(|r| match r {
            Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::DoesNotExist(k) => !labels.contains_key(k),
        })
    }

    /// `None` for an operator the API server would have refused.
    pub fn from_k8s(
        s: &k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    ) -> Result<Self, String> {
        let mut requirements = Vec::new();
        for (k, v) in s.match_labels.iter().flatten() {
            requirements.push(Requirement::In(
                Name::from(k.as_str()),
                vec![Name::from(v.as_str())],
            ));
        }
        for e in s.match_expressions.iter().flatten() {
            let key = Name::from(e.key.as_str());
            let values: Vec<Name> = e
                .values
                .iter()
                .flatten()
                .map(|v| Name::from(v.as_str()))
                .collect();
            requirements.push(match e.operator.as_str() {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => return Err(format!("unknown label selector operator {other:?}")),
            });
        }
        Ok(LabelSelector { requirements })
    }
}
