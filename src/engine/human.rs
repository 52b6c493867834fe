//! Durations for people (issue 13): `31d 4h`, not `748h 3m 58s 879ms`.

/// A duration for people: its two largest units, days counted as 24
/// hours (`31d 4h`, `2h 30m`, `45s`), never `748h 3m 58s 879ms 938µs`.
/// Truncated, so that "more than the limit" stays true when printed.
pub fn human(d: jiff::SignedDuration) -> String {
    use jiff::{RoundMode, SignedDuration, SpanRound, Unit};
    let abs = d.abs();
    let smallest = if abs >= SignedDuration::from_hours(24) {
        Unit::Hour
    } else if abs >= SignedDuration::from_hours(1) {
        Unit::Minute
    } else if abs >= SignedDuration::from_mins(1) {
        Unit::Second
    } else {
        Unit::Millisecond
    };
    let options = SpanRound::new()
        .largest(Unit::Day)
        .smallest(smallest)
        .mode(RoundMode::Trunc)
        .days_are_24_hours();
    match jiff::Span::try_from(d).and_then(|s| s.round(options)) {
        Ok(span) => format!("{span:#}"),
        Err(_) => format!("{d:#}"),
    }
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;

    use super::human;

    #[test]
    fn durations_read_like_people_write_them() {
        let d = SignedDuration::from_hours(748)
            + SignedDuration::from_mins(3)
            + SignedDuration::from_millis(58_879);
        assert_eq!(human(d), "31d 4h");
        assert_eq!(human(SignedDuration::from_hours(24)), "1d");
        assert_eq!(human(SignedDuration::from_mins(150)), "2h 30m");
        assert_eq!(human(SignedDuration::from_secs(45)), "45s");
        assert_eq!(human(SignedDuration::from_millis(1500)), "1s 500ms");
    }
}
