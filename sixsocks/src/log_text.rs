//! How a text log line's timestamp and fields are written: the same text
//! as tracing-subscriber's defaults, with less work per line.
//!
//! A busy server writes a `session end` line per connection, with ten
//! fields. tracing-subscriber's default field formatter styles every field
//! name and `=` through its colour-code type even when colours are off,
//! and its clock turns the time into a calendar date for every line.
//! Under callgrind, with one connection after another, that was a third
//! of the proxy's user-space instructions per connection (bench/README.md).
//! [`LineFields`] writes ` name=value` straight into the line (with
//! colours on, the default formatter does it, styles and all), and
//! [`LineTime`] keeps each thread's last second as text and writes only
//! the microseconds anew. The tests compare both with the defaults.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::FormatFields;

/// The fields of an event or span, as tracing-subscriber's default
/// formatter writes them without colours: the message as it is, every
/// other field as ` name=value` (its `Debug` form; strings quoted).
#[derive(Debug, Default, Clone, Copy)]
pub struct LineFields;

impl<'w> FormatFields<'w> for LineFields {
    fn format_fields<R: RecordFields>(&self, writer: Writer<'w>, fields: R) -> fmt::Result {
        if writer.has_ansi_escapes() {
            return DefaultFields::new().format_fields(writer, fields);
        }
        let mut v = Visitor {
            writer,
            first: true,
            result: Ok(()),
        };
        fields.record(&mut v);
        v.result
    }
}

struct Visitor<'w> {
    writer: Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Visitor<'_> {
    /// The space before every field but the first, then `name=` (none for
    /// the message). `None`: skip the field.
    fn start(&mut self, field: &Field) -> Option<bool> {
        if self.result.is_err() {
            return None;
        }
        let name = field.name();
        // Metadata of a `log` record, shown by the line's own parts.
        if name.starts_with("log.") {
            return None;
        }
        if !std::mem::take(&mut self.first) {
            self.result = self.writer.write_char(' ');
        }
        if name == "message" {
            return Some(true);
        }
        let name = name.strip_prefix("r#").unwrap_or(name);
        self.result = self
            .result
            .and_then(|()| self.writer.write_str(name))
            .and_then(|()| self.writer.write_char('='));
        Some(false)
    }
}

impl Visit for Visitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match self.start(field) {
            None => {}
            Some(true) => self.result = Escaping(&mut self.writer).write_str(value),
            Some(false) => self.result = write!(self.writer, "{value:?}"),
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field).is_some() {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field).is_some() {
            self.result = write!(self.writer, "{value}");
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field).is_some() {
            self.result = self.writer.write_str(if value { "true" } else { "false" });
        }
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        let Some(_) = self.start(field) else {
            return;
        };
        let mut r = write!(Escaping(&mut self.writer), "{value}");
        if let Some(source) = value.source() {
            let name = field.name().strip_prefix("r#").unwrap_or(field.name());
            r = r.and_then(|()| write!(self.writer, " {name}.sources=["));
            let mut next = Some(source);
            let mut first = true;
            while let (Ok(()), Some(e)) = (r, next) {
                if !std::mem::take(&mut first) {
                    r = self.writer.write_str(", ");
                }
                r = r.and_then(|()| write!(Escaping(&mut self.writer), "{e}"));
                next = e.source();
            }
            r = r.and_then(|()| self.writer.write_char(']'));
        }
        self.result = r;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match self.start(field) {
            None => {}
            Some(true) => self.result = write!(Escaping(&mut self.writer), "{value:?}"),
            Some(false) => self.result = write!(self.writer, "{value:?}"),
        }
    }
}

/// Writes through, with the characters terminals act on shown escaped, as
/// tracing-subscriber does for messages and errors (the writer's
/// `OneLine` guard escapes every other control character after).
struct Escaping<'a, 'w>(&'a mut Writer<'w>);

impl fmt::Write for Escaping<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let plain = |c: char| {
            !matches!(
                c,
                '\x07' | '\x08' | '\x0c' | '\x1b' | '\x7f' | '\u{80}'..='\u{9f}'
            )
        };
        if s.chars().all(plain) {
            return self.0.write_str(s);
        }
        for c in s.chars() {
            match c {
                '\x1b' => self.0.write_str("\\x1b")?,
                '\x07' => self.0.write_str("\\x07")?,
                '\x08' => self.0.write_str("\\x08")?,
                '\x0c' => self.0.write_str("\\x0c")?,
                '\x7f' => self.0.write_str("\\x7f")?,
                '\u{80}'..='\u{9f}' => write!(self.0, "\\u{{{:x}}}", c as u32)?,
                c => self.0.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// The time as tracing-subscriber's default clock writes it (RFC 3339,
/// UTC, microseconds: `2026-12-03T19:12:22.461028Z`), with the text up
/// to the second kept per thread.
#[derive(Debug, Default, Clone, Copy)]
pub struct LineTime;

thread_local! {
    /// The last second written on this thread, and its text.
    static LAST_SECOND: RefCell<(i64, String)> = const { RefCell::new((i64::MIN, String::new())) };
}

impl FormatTime for LineTime {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        let (secs, micros) = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_micros()),
            // A clock before 1970: the default's text, no cache.
            Err(_) => {
                return tracing_subscriber::fmt::time::SystemTime.format_time(w);
            }
        };
        LAST_SECOND.with(|last| {
            let mut last = last.borrow_mut();
            if last.0 != secs {
                last.1.clear();
                write_second(&mut last.1, secs)?;
                last.0 = secs;
            }
            w.write_str(&last.1)
        })?;
        write!(w, ".{micros:06}Z")
    }
}

/// `YYYY-MM-DDTHH:MM:SS` of `secs` after the epoch (UTC).
fn write_second(out: &mut String, secs: i64) -> fmt::Result {
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    if y > 9999 {
        write!(out, "+{y}")?;
    } else {
        write!(out, "{y:04}")?;
    }
    write!(
        out,
        "-{m:02}-{d:02}T{:02}:{:02}:{:02}",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60
    )
}

/// The proleptic Gregorian date of `days` after 1970-01-01 (Howard
/// Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::fmt::MakeWriter;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buf {
        type Writer = Buf;
        fn make_writer(&'a self) -> Buf {
            self.clone()
        }
    }

    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[derive(Debug)]
    struct Outer(Inner);
    #[derive(Debug)]
    struct Inner;
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("cannot connect")
        }
    }
    impl fmt::Display for Inner {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("refused \x1b[31m")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }
    impl std::error::Error for Inner {}

    /// Every kind of field the server logs, plus the awkward ones.
    fn events() {
        let client: std::net::SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let err = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        tracing::info!(
            target: "sixsocks::session",
            client = %client,
            user = %"-",
            up = 64u64,
            down = 0u64,
            delta = -3i64,
            ok = true,
            "session end"
        );
        tracing::warn!(
            name = "a \"quoted\"\nname",
            r#type = 5u8,
            "odd \x1b[1m message\u{85}"
        );
        tracing::error!(error = &err as &(dyn std::error::Error + 'static), "failed");
        let chain = Outer(Inner);
        tracing::error!(
            error = &chain as &(dyn std::error::Error + 'static),
            "chain"
        );
        tracing::info!(list = ?vec![1, 2], "debug value");
        tracing::info!("only a message");
        tracing::info!(n = 1u64);
        let span = tracing::info_span!("conn", id = 7u64, peer = %client);
        let _g = span.enter();
        tracing::info!(x = 1u64, "in a span");
    }

    fn without_time(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| l.split_once(' ').map_or(l, |(_, rest)| rest).to_string())
            .collect()
    }

    #[test]
    fn lines_are_the_default_formatters_text() {
        let ours = Buf::default();
        let theirs = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(ours.clone())
            .with_ansi(false)
            .with_timer(LineTime)
            .fmt_fields(LineFields)
            .finish();
        tracing::subscriber::with_default(sub, events);
        let sub = tracing_subscriber::fmt()
            .with_writer(theirs.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(sub, events);
        let (a, b) = (without_time(&ours.text()), without_time(&theirs.text()));
        assert_eq!(a.len(), 8, "{a:#?}");
        assert_eq!(a, b);
        assert!(a[0]
            .ends_with("session end client=127.0.0.1:5000 user=- up=64 down=0 delta=-3 ok=true"));
    }

    #[test]
    fn with_colours_the_fields_are_the_defaults() {
        let ours = Buf::default();
        let theirs = Buf::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(ours.clone())
            .with_ansi(true)
            .with_timer(LineTime)
            .fmt_fields(LineFields)
            .finish();
        tracing::subscriber::with_default(sub, events);
        let sub = tracing_subscriber::fmt()
            .with_writer(theirs.clone())
            .with_ansi(true)
            .finish();
        tracing::subscriber::with_default(sub, events);
        let (a, b) = (ours.text(), theirs.text());
        assert!(a.contains('\x1b'));
        let strip = |t: &str| {
            t.lines()
                .map(|l| l.split_once(' ').map_or(l, |x| x.1).to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(strip(&a), strip(&b));
    }

    fn second(secs: i64) -> String {
        let mut s = String::new();
        write_second(&mut s, secs).unwrap();
        s
    }

    #[test]
    fn seconds_read_as_the_calendar() {
        assert_eq!(second(0), "1970-01-01T00:00:00");
        assert_eq!(second(951_782_400), "2000-02-29T00:00:00");
        assert_eq!(second(1_796_325_142), "2026-12-03T19:12:22");
        assert_eq!(second(4_107_542_399), "2100-02-28T23:59:59");
        assert_eq!(second(4_107_542_400), "2100-03-01T00:00:00");
        assert_eq!(second(253_402_300_799), "9999-12-31T23:59:59");
        assert_eq!(second(253_402_300_800), "+10000-01-01T00:00:00");
    }

    #[test]
    fn the_time_is_the_default_clocks_to_the_second() {
        let mut w = String::new();
        LineTime.format_time(&mut Writer::new(&mut w)).unwrap();
        let mut d = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut d))
            .unwrap();
        // Same shape; the same second unless one straddled a boundary.
        assert_eq!(w.len(), d.len(), "{w} / {d}");
        assert_eq!(&w[19..20], ".");
        assert!(w.ends_with('Z'));
        assert!(w[..19] == d[..19] || w[..17] == d[..17], "{w} / {d}");
    }
}
