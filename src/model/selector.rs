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
}
