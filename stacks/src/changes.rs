//! What the change-set driver reports: change rows and their table, stack events,
//! resources and status.

use std::fmt;

/// One line of a change set: what happens to one resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ResourceChange {
    /// `Add`, `Modify`, `Remove` (or `Dynamic`, `Import`).
    pub action: String,
    pub logical_id: String,
    pub resource_type: String,
    /// `True`, `False` or `Conditional` for modifications; empty otherwise.
    pub replacement: String,
}

/// A created change set.
#[derive(Debug, Clone)]
pub struct ChangeSet {
    pub id: String,
    /// Whether it creates the stack (`CREATE`) or updates it (`UPDATE`).
    pub creates_stack: bool,
    pub changes: Vec<ResourceChange>,
}

/// Renders changes as an aligned text table, sorted by logical id.
pub fn changes_table(changes: &[ResourceChange]) -> String {
    if changes.is_empty() {
        return "no changes\n".to_owned();
    }
    let mut rows: Vec<[String; 4]> = vec![[
        "ACTION".into(),
        "LOGICAL ID".into(),
        "TYPE".into(),
        "REPLACEMENT".into(),
    ]];
    let mut sorted = changes.to_vec();
    sorted.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
    for c in sorted {
        let replacement = match c.replacement.as_str() {
            "" => "-".to_owned(),
            "True" => "yes (replaced)".to_owned(),
            "False" => "no".to_owned(),
            other => other.to_lowercase(),
        };
        rows.push([c.action, c.logical_id, c.resource_type, replacement]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let line = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect::<Vec<_>>()
            .join("  ");
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A change set and what it really changes.
#[derive(Debug, Clone)]
pub struct Preview {
    pub change_set: ChangeSet,
    /// The resources that change, by logical id.
    pub rows: Vec<ResourceChange>,
    /// Resources CloudFormation listed although their definitions are the same.
    pub unchanged_listed: usize,
}

impl Preview {
    /// The rows as a table, with a note on rows left out.
    pub fn table(&self) -> String {
        let mut out = changes_table(&self.rows);
        if self.unchanged_listed > 0 {
            out.push_str(&format!(
                "({} more listed by CloudFormation with no change in their definition)\n",
                self.unchanged_listed
            ));
        }
        out
    }
}

/// One stack event, as shown while a deployment runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackEvent {
    pub at: String,
    pub logical_id: String,
    pub resource_type: String,
    pub status: String,
    pub reason: String,
}

impl fmt::Display for StackEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}  {:<28} {:<40} {}",
            self.at, self.status, self.logical_id, self.resource_type
        )?;
        if !self.reason.is_empty() {
            write!(f, "  ({})", self.reason)?;
        }
        Ok(())
    }
}

/// A resource of a deployed stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackResource {
    pub logical_id: String,
    pub physical_id: String,
    pub resource_type: String,
    pub status: String,
}

/// The stack's status and when it last changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackStatus {
    pub name: String,
    /// The stack's ARN (`arn:<partition>:cloudformation:<region>:<account>:stack/…`).
    pub id: String,
    pub status: String,
    pub reason: String,
    pub image: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_table_is_aligned_and_sorted() {
        let table = changes_table(&[
            ResourceChange {
                action: "Modify".into(),
                logical_id: "WorkerTaskDefinition".into(),
                resource_type: "AWS::ECS::TaskDefinition".into(),
                replacement: "True".into(),
            },
            ResourceChange {
                action: "Add".into(),
                logical_id: "Alarm".into(),
                resource_type: "AWS::CloudWatch::Alarm".into(),
                replacement: String::new(),
            },
        ]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("ACTION  LOGICAL ID"));
        assert!(lines[1].starts_with("Add     Alarm"));
        assert!(lines[2].ends_with("yes (replaced)"));
        assert_eq!(changes_table(&[]), "no changes\n");
    }
}
