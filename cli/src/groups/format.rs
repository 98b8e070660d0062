//! How `skein groups` prints: kafka-consumer-groups.sh's layouts, as aligned tables.

use std::collections::{BTreeMap, BTreeSet};

use skein_client::assignment::Assignment;

use skein_client::group_admin::{GroupDescription, Member};

/// `-` for an empty cell.
pub(super) fn dash_if_empty(s: String) -> String {
    if s.is_empty() {
        "-".to_owned()
    } else {
        s
    }
}

/// Columns padded to their widest cell, two spaces apart; the last column is not padded.
pub(super) fn format_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        assert_eq!(
            row.len(),
            header.len(),
            "a row has as many cells as the header"
        );
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len() - 1;
        for (i, cell) in row.iter().enumerate() {
            out.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                out.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push('\n');
    }
    out
}

/// An assignment as `topic(0,1,2),other(5)`; `-` if empty.
fn format_assignment(assignment: &Result<Assignment, String>) -> String {
    match assignment {
        Err(_) => "(undecodable)".to_owned(),
        Ok(a) if a.is_empty() => "-".to_owned(),
        Ok(a) => a
            .iter()
            .map(|(t, ps)| {
                let mut ps = ps.clone();
                ps.sort_unstable();
                let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                format!("{t}({})", ps.join(","))
            })
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// kafka-consumer-groups --describe: the group's state, its members, then one line per
/// partition with a committed offset or an owner.
pub(super) fn format_group_description(
    group: &str,
    d: &GroupDescription,
    coordinator_addr: &str,
    committed: &BTreeMap<(String, i32), i64>,
    ends: &BTreeMap<(String, i32), i64>,
) -> String {
    let mut out = String::new();
    out.push_str(&format!("Group:         {group}\n"));
    out.push_str(&format!(
        "Coordinator:   {} ({coordinator_addr})\n",
        d.coordinator
    ));
    out.push_str(&format!("State:         {}\n", d.state));
    out.push_str(&format!(
        "Protocol type: {}\n",
        dash_if_empty(d.protocol_type.clone())
    ));
    out.push_str(&format!(
        "Assignor:      {}\n",
        dash_if_empty(d.protocol.clone())
    ));
    out.push_str(&format!("Members:       {}\n\n", d.members.len()));
    out.push_str(&format_members(&d.members));
    out.push_str(&format_partitions(&d.members, committed, ends));
    out
}

/// The member table, or a line saying there is none.
fn format_members(members: &[Member]) -> String {
    if members.is_empty() {
        return "(no active members)\n\n".to_owned();
    }
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.id.clone(),
                m.instance_id.clone().unwrap_or_else(|| "-".to_owned()),
                dash_if_empty(m.client_id.clone()),
                dash_if_empty(m.host.clone()),
                format_assignment(&m.assignment),
            ]
        })
        .collect();
    let mut out = format_table(
        &[
            "MEMBER-ID",
            "INSTANCE-ID",
            "CLIENT-ID",
            "HOST",
            "ASSIGNMENT",
        ],
        &rows,
    );
    out.push('\n');
    out
}

/// One line per partition with a committed offset or an owner: offsets, lag and owner.
fn format_partitions(
    members: &[Member],
    committed: &BTreeMap<(String, i32), i64>,
    ends: &BTreeMap<(String, i32), i64>,
) -> String {
    let mut owners: BTreeMap<(String, i32), &Member> = BTreeMap::new();
    for m in members {
        for (t, ps) in m.assignment.as_deref().unwrap_or_default() {
            for p in ps {
                owners.insert((t.clone(), *p), m);
            }
        }
    }
    let partitions: BTreeSet<&(String, i32)> = committed.keys().chain(owners.keys()).collect();
    if partitions.is_empty() {
        return "(no committed offsets)\n".to_owned();
    }
    let rows: Vec<Vec<String>> = partitions
        .into_iter()
        .map(|key| {
            let current = committed.get(key).copied();
            let end = ends.get(key).copied();
            let show = |o: Option<i64>| o.map_or_else(|| "-".to_owned(), |o| o.to_string());
            let lag = match (current, end) {
                (Some(c), Some(e)) => Some((e - c).max(0)),
                _ => None,
            };
            let owner = owners.get(key);
            vec![
                key.0.clone(),
                key.1.to_string(),
                show(current),
                show(end),
                show(lag),
                owner.map_or_else(|| "-".to_owned(), |m| m.id.clone()),
                owner.map_or_else(|| "-".to_owned(), |m| dash_if_empty(m.host.clone())),
                owner.map_or_else(|| "-".to_owned(), |m| dash_if_empty(m.client_id.clone())),
            ]
        })
        .collect();
    format_table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "HOST",
            "CLIENT-ID",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_format() {
        let a: Assignment = vec![("orders".into(), vec![2, 0]), ("t".into(), vec![])];
        assert_eq!(format_assignment(&Ok(a)), "orders(0,2),t()");
        assert_eq!(format_assignment(&Ok(vec![])), "-");
        assert_eq!(format_assignment(&Err("x".into())), "(undecodable)");
    }

    #[test]
    fn describe_output_looks_like_kafka_consumer_groups() {
        let d = GroupDescription {
            coordinator: 2,
            state: "Stable".into(),
            protocol_type: "consumer".into(),
            protocol: "range".into(),
            members: vec![Member {
                id: "c-1".into(),
                instance_id: None,
                client_id: "rdkafka".into(),
                host: "/127.0.0.1".into(),
                assignment: Ok(vec![("t".into(), vec![0, 1])]),
            }],
        };
        let committed = BTreeMap::from([(("t".to_owned(), 0), 5), (("old".to_owned(), 3), 7)]);
        let ends = BTreeMap::from([(("t".to_owned(), 0), 8), (("t".to_owned(), 1), 4)]);
        assert_eq!(
            format_group_description("g", &d, "127.0.0.1:9093", &committed, &ends),
            "Group:         g\n\
             Coordinator:   2 (127.0.0.1:9093)\n\
             State:         Stable\n\
             Protocol type: consumer\n\
             Assignor:      range\n\
             Members:       1\n\
             \n\
             MEMBER-ID  INSTANCE-ID  CLIENT-ID  HOST        ASSIGNMENT\n\
             c-1        -            rdkafka    /127.0.0.1  t(0,1)\n\
             \n\
             TOPIC  PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG  CONSUMER-ID  HOST        CLIENT-ID\n\
             old    3          7               -               -    -            -           -\n\
             t      0          5               8               3    c-1          /127.0.0.1  rdkafka\n\
             t      1          -               4               -    c-1          /127.0.0.1  rdkafka\n"
        );
        let empty = GroupDescription {
            state: "Empty".into(),
            protocol: String::new(),
            members: vec![],
            ..d
        };
        assert!(empty.is_inactive());
        let out = format_group_description("g", &empty, "h:1", &BTreeMap::new(), &BTreeMap::new());
        assert!(out.contains("Assignor:      -\n"), "{out}");
        assert!(
            out.ends_with("(no active members)\n\n(no committed offsets)\n"),
            "{out}"
        );
    }

    #[test]
    fn tables_align() {
        assert_eq!(
            format_table(
                &["GROUP", "STATE"],
                &[
                    vec!["a-long-group".into(), "Empty".into()],
                    vec!["b".into(), "-".into()]
                ]
            ),
            "GROUP         STATE\na-long-group  Empty\nb             -\n"
        );
        assert_eq!(format_table(&["A"], &[]), "A\n");
    }
}
