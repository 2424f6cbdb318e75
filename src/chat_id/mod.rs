//! Turns raw CRM values (phone numbers in any format, chat ids) into GREEN-API chat ids.
//!
//! Pure functions only: a value that cannot be a valid personal chat id is rejected here with a
//! reason a person understands, so it never costs an API call.

mod country_rules;
mod patterns;

use std::fmt;
use std::str::FromStr;

use phonenumber::country;
use phonenumber::metadata::Metadata;

use crate::domain::InvalidValue;

/// Which messenger the instance talks to; decides the chat id shape and the URL prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Messenger {
    /// WhatsApp: `digits@c.us` ids.
    #[default]
    Whatsapp,
    /// MAX: numeric ids, calls under `/v3`.
    Max,
    /// Telegram: numeric user ids; phone numbers and `@usernames` are resolved to them with
    /// `checkAccount` first.
    Telegram,
}

impl Messenger {
    /// `whatsapp` or `max`.
    pub fn as_str(self) -> &'static str {
        match self {
            Messenger::Whatsapp => "whatsapp",
            Messenger::Max => "max",
            Messenger::Telegram => "telegram",
        }
    }
}

impl FromStr for Messenger {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "whatsapp" | "wa" => Ok(Messenger::Whatsapp),
            "max" => Ok(Messenger::Max),
            "telegram" | "tg" => Ok(Messenger::Telegram),
            other => Err(InvalidValue(format!(
                "unknown messenger '{other}': use whatsapp, max or telegram"
            ))),
        }
    }
}

impl fmt::Display for Messenger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A default country for national phone formats, such as `RU` for `8 900 123-45-67`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultCountry {
    id: country::Id,
    /// Its calling code (`7` for RU), looked up once.
    code: u16,
}

impl FromStr for DefaultCountry {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || {
            InvalidValue(format!(
                "unknown country code '{s}': use a two-letter ISO code such as RU"
            ))
        };
        let id = country::Id::from_str(&s.trim().to_ascii_uppercase()).map_err(|_| unknown())?;
        let code = phonenumber::metadata::DATABASE
            .by_id(id.as_ref())
            .map(Metadata::country_code)
            .ok_or_else(unknown)?;
        Ok(DefaultCountry { id, code })
    }
}

impl DefaultCountry {
    /// Whether `digits` start with this country's calling code.
    fn code_starts(self, digits: &str) -> bool {
        let width = self.code.checked_ilog10().map_or(1, |log| log as usize + 1);
        digits
            .get(..width)
            .and_then(|head| head.parse::<u16>().ok())
            == Some(self.code)
    }
}

/// Why a value cannot be a chat id (recorded with reason `invalid_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) message: String,
}

impl Invalid {
    fn new(message: impl Into<String>) -> Self {
        Invalid {
            message: message.into(),
        }
    }
}

/// A normalised chat id with the phone digits it stands for (when it is a phone number).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChatId {
    pub(crate) id: String,
    pub(crate) phone: Option<String>,
}

/// The longest MAX id accepted: ids are positive 64-bit integers.
const MAX_ID_DIGITS: usize = 19;

/// How an input's values are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Notation {
    /// The messenger whose ids the values become.
    pub messenger: Messenger,
    /// The country of national phone formats.
    pub default_country: Option<DefaultCountry>,
    /// Telegram: values of digits only are user ids, not phone numbers (`--telegram-ids`).
    pub telegram_ids: bool,
}

impl Notation {
    /// Values for `messenger`, with no default country.
    pub fn of(messenger: Messenger) -> Notation {
        Notation {
            messenger,
            ..Notation::default()
        }
    }
}

/// Normalises one raw value as `notation` reads it.
pub(crate) fn normalise(raw: &str, notation: Notation) -> Result<ChatId, Invalid> {
    let value = raw.trim();
    if value.is_empty() {
        return Err(Invalid::new("empty value"));
    }
    match notation.messenger {
        Messenger::Whatsapp => whatsapp(value, notation.default_country),
        Messenger::Max => max(value),
        Messenger::Telegram => telegram(value, notation),
    }
}

/// Loads the phone number metadata now (it is otherwise loaded by the first number read), so
/// that a run can do it while it opens its store.
pub(crate) fn load_phone_metadata() {
    patterns::load();
}

/// Whether `key` is a Telegram phone number (`+digits`) or `@username` that `checkAccount` has
/// to turn into a chat id before `getContactInfo` can be asked.
pub(crate) fn needs_resolving(key: &str) -> bool {
    key.starts_with(['+', '@'])
}

fn whatsapp(value: &str, default_country: Option<DefaultCountry>) -> Result<ChatId, Invalid> {
    if strip_suffix_ignoring_case(value, "@g.us").is_some() {
        return Err(Invalid::new(
            "a group chat id (@g.us): getContactInfo only answers for personal chats",
        ));
    }
    if let Some(lid) = strip_suffix_ignoring_case(value, "@lid") {
        return linked_id(lid);
    }
    if let Some(digits) = strip_suffix_ignoring_case(value, "@c.us") {
        return personal_chat_id(digits);
    }
    if value.contains('@') {
        return Err(Invalid::new(
            "not a phone number or personal chat id (only @c.us and @lid ids are accepted)",
        ));
    }
    whatsapp_phone(value, default_country)
}

/// A linked id (`…@lid`): sent as WhatsApp wrote it; the API decides (a 400 is a rejected key).
fn linked_id(lid: &str) -> Result<ChatId, Invalid> {
    if lid.is_empty() || lid.len() > 20 || !lid.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::new(
            "a linked id must be digits followed by @lid, like 120650379300963@lid",
        ));
    }
    Ok(ChatId {
        id: format!("{lid}@lid"),
        phone: None,
    })
}

/// A chat id (`…@c.us`) that came from WhatsApp or GREEN-API itself: taken as it is.
fn personal_chat_id(digits: &str) -> Result<ChatId, Invalid> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::new(
            "a chat id must be digits followed by @c.us, like 79001234567@c.us",
        ));
    }
    if !(8..=15).contains(&digits.len()) {
        return Err(Invalid::new(format!(
            "a chat id has 8 to 15 digits before @c.us, this one {}",
            digits.len()
        )));
    }
    Ok(ChatId {
        id: format!("{digits}@c.us"),
        phone: Some(digits.to_string()),
    })
}

/// A phone number, in any notation, as WhatsApp's chat id.
fn whatsapp_phone(value: &str, default_country: Option<DefaultCountry>) -> Result<ChatId, Invalid> {
    let phone = country_rules::whatsapp(phone_digits(value, default_country)?);
    check_length(&phone)?;
    Ok(ChatId {
        id: [phone.as_str(), "@c.us"].concat(),
        phone: Some(phone),
    })
}

/// A phone number, in any notation, as the digits of its international form.
fn phone_digits(value: &str, default_country: Option<DefaultCountry>) -> Result<String, Invalid> {
    let number = without_zero_decimals(value);
    if number.chars().any(|c| c.is_alphabetic()) {
        return Err(Invalid::new("contains letters: not a phone number"));
    }
    let digit_count = number.chars().filter(char::is_ascii_digit).count();
    if digit_count < 7 {
        return Err(Invalid::new(format!(
            "too short for a phone number ({digit_count} digits)"
        )));
    }
    if digit_count > 15 {
        return Err(Invalid::new(format!(
            "too long for a phone number ({digit_count} digits; the maximum is 15)"
        )));
    }
    let phone = parse_phone(number, default_country)?;
    check_length(&phone)?;
    Ok(phone)
}

/// A national number with the country code put in front can pass libphonenumber's patterns
/// with more digits than any chat id has (E.164 allows 15).
fn check_length(phone: &str) -> Result<(), Invalid> {
    if (8..=15).contains(&phone.len()) {
        return Ok(());
    }
    Err(Invalid::new(format!(
        "not a valid phone number: with its country code it has {} digits (a chat id has 8 to 15)",
        phone.len()
    )))
}

/// A number a numeric cell wrote with zero decimals (`79001234567.0`, `79001234567,00`) without
/// them; anything else as it is.
fn without_zero_decimals(value: &str) -> &str {
    let Some(at) = value.rfind(['.', ',']) else {
        return value;
    };
    let (whole, decimals) = (&value[..at], &value[at + 1..]);
    let digits = whole.strip_prefix('+').unwrap_or(whole);
    let is_number = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
    let zeros = !decimals.is_empty() && decimals.bytes().all(|b| b == b'0');
    if is_number && zeros {
        whole
    } else {
        value
    }
}

/// Parses and validates a number, returning its international digits. Punctuation is dropped
/// first. International numbers (`+`, `00`) are taken as they are. Bare digits are read in the
/// default country's national format first ("8 495 …" is Moscow, not Vietnam), then as an
/// international number whose `+` was dropped, as CRM exports often do.
fn parse_phone(number: &str, default_country: Option<DefaultCountry>) -> Result<String, Invalid> {
    let reading = Reading::of(number, default_country);
    match reading.fast() {
        Some(valid) => Ok(valid),
        None => reading.full(),
    }
}

/// A number's digits and how they are read.
struct Reading {
    digits: String,
    /// Written with `+` or `00` (dropped from `digits`).
    international: bool,
    country: Option<DefaultCountry>,
}

impl Reading {
    fn of(number: &str, country: Option<DefaultCountry>) -> Reading {
        let trimmed = number.trim_start();
        let mut digits: String = number.chars().filter(char::is_ascii_digit).collect();
        let international = if trimmed.starts_with("00") {
            digits.drain(..2);
            true
        } else {
            trimmed.starts_with('+')
        };
        Reading {
            digits,
            international,
            country,
        }
    }

    /// The fast path, for the common case of digits that already are a valid international
    /// number: no pattern of libphonenumber's parser is run. It settles only numbers read
    /// internationally anyway (written so, no default country, or starting with the default
    /// country's own code); `None` leaves the number to [`Reading::full`], whose answer it
    /// always equals when it gives one (a property test compares them).
    fn fast(&self) -> Option<String> {
        let read_internationally = self.international
            || self
                .country
                .is_none_or(|country| country.code_starts(&self.digits));
        if !read_internationally {
            return None;
        }
        let digits = country_rules::canonical(&self.digits);
        is_valid_international(&digits).then(|| digits.into_owned())
    }

    /// libphonenumber's parser and `is_valid`: bare digits in the default country's national
    /// format first, then as an international number.
    fn full(&self) -> Result<String, Invalid> {
        let international = || {
            let digits = country_rules::canonical(&self.digits);
            parse_and_validate(None, &format!("+{digits}"))
        };
        if self.international {
            return international().ok_or_else(not_valid);
        }
        if let Some(valid) = self
            .country
            .and_then(|country| parse_and_validate(Some(country.id), &self.digits))
        {
            return Ok(valid);
        }
        international().ok_or_else(|| match self.country {
            Some(_) => not_valid(),
            None => Invalid::new(
                "not a valid international number; if it is in a national format, set --default-country",
            ),
        })
    }
}

/// The library's full parser and `is_valid`; returns the number's international digits.
fn parse_and_validate(country: Option<country::Id>, text: &str) -> Option<String> {
    phonenumber::parse(country, text)
        .ok()
        .filter(phonenumber::PhoneNumber::is_valid)
        .map(|p| format!("{}{}", p.code().value(), p.national()))
}

/// Digits that are a valid international number as libphonenumber would parse them, checked
/// without its parser: the country code is found in its metadata (codes are prefix-free), the
/// region as its validator picks it, and the rest must be a number of a known type there. A
/// number the parser would change (a leading zero, a national prefix it strips) is left to it.
fn is_valid_international(digits: &str) -> bool {
    if digits.starts_with('0') {
        return false;
    }
    for len in 1..=3.min(digits.len()) {
        let Ok(code) = digits[..len].parse::<u16>() else {
            return false;
        };
        let regions = patterns::regions(code);
        if regions.is_empty() {
            continue;
        }
        let national = &digits[len..];
        let Some(meta) = region_of(regions, national) else {
            return false;
        };
        let as_written = !national.starts_with('0') && !strips_national_prefix(meta, national);
        return as_written && is_known_type(meta, national);
    }
    false
}

/// The region libphonenumber reads `national` in: a code's only region, or the first whose
/// leading digits begin it, or (without leading digits) whose numbers it fits.
fn region_of(regions: &[&'static Metadata], national: &str) -> Option<&'static Metadata> {
    if let [only] = regions {
        return Some(only);
    }
    for &meta in regions {
        let fits = match meta.leading_digits() {
            Some(pattern) => patterns::matches_at_start(pattern.as_str(), national)?,
            None => is_known_type(meta, national),
        };
        if fits {
            return Some(meta);
        }
    }
    None
}

/// Whether the parser would (or might) take a national prefix or a carrier code off `national`.
fn strips_national_prefix(meta: &'static Metadata, national: &str) -> bool {
    match meta.national_prefix_for_parsing() {
        Some(pattern) => patterns::matches_at_start(pattern.as_str(), national) != Some(false),
        None => meta
            .national_prefix()
            .is_some_and(|prefix| national.starts_with(prefix)),
    }
}

/// libphonenumber's validity in a region: the general pattern fits, and so does some number
/// type's (the common types first; which one does not matter).
fn is_known_type(meta: &'static Metadata, national: &str) -> bool {
    let descriptors = meta.descriptors();
    let types = [
        descriptors.mobile(),
        descriptors.fixed_line(),
        descriptors.toll_free(),
        descriptors.premium_rate(),
        descriptors.shared_cost(),
        descriptors.personal_number(),
        descriptors.voip(),
        descriptors.pager(),
        descriptors.uan(),
        descriptors.voicemail(),
    ];
    patterns::fits(descriptors.general(), national)
        && types
            .into_iter()
            .flatten()
            .any(|d| patterns::fits(d, national))
}

fn not_valid() -> Invalid {
    Invalid::new("not a valid phone number for its country (check the digits and the country code)")
}

/// A Telegram value: `@username` (or a `t.me/` link) becomes `@username` in lower case, a phone
/// number `+digits`, and with `--telegram-ids` bare digits the user id itself.
fn telegram(value: &str, notation: Notation) -> Result<ChatId, Invalid> {
    let link = ["https://t.me/", "http://t.me/", "t.me/"]
        .iter()
        .find_map(|prefix| strip_prefix_ignoring_case(value, prefix));
    if let Some(name) = value.strip_prefix('@').or(link) {
        return telegram_username(name);
    }
    if value.starts_with('-') {
        return Err(Invalid::new(
            "a negative id is a group chat: getContactInfo only answers for personal chats",
        ));
    }
    if notation.telegram_ids && value.bytes().all(|b| b.is_ascii_digit()) {
        return positive_id(value, "a Telegram user id");
    }
    // In the form libphonenumber validates: an old Brazilian mobile read in the national format
    // gets its ninth digit, as the same number written internationally does.
    let phone = phone_digits(value, notation.default_country).map_err(|e| {
        if value.bytes().all(|b| b.is_ascii_digit()) {
            Invalid::new(format!(
                "{}; if the column holds Telegram user ids, add --telegram-ids",
                e.message
            ))
        } else {
            e
        }
    })?;
    let phone = country_rules::canonical(&phone).into_owned();
    Ok(ChatId {
        id: format!("+{phone}"),
        phone: Some(phone),
    })
}

fn strip_prefix_ignoring_case<'a>(value: &'a str, prefix: &str) -> Option<&'a str> {
    let head = value.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &value[prefix.len()..])
}

fn strip_suffix_ignoring_case<'a>(value: &'a str, suffix: &str) -> Option<&'a str> {
    let at = value.len().checked_sub(suffix.len())?;
    let tail = value.get(at..)?;
    tail.eq_ignore_ascii_case(suffix).then(|| &value[..at])
}

/// A Telegram username: 4 to 32 letters, digits and underscores, starting with a letter.
fn telegram_username(name: &str) -> Result<ChatId, Invalid> {
    let name = name.trim_end_matches('/');
    let valid = (4..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if !valid {
        return Err(Invalid::new(
            "a Telegram username has 4 to 32 letters, digits or underscores after the @, starting with a letter",
        ));
    }
    Ok(ChatId {
        id: format!("@{}", name.to_ascii_lowercase()),
        phone: None,
    })
}

fn max(value: &str) -> Result<ChatId, Invalid> {
    if value.starts_with('-') {
        return Err(Invalid::new(
            "a negative id is a group chat: getContactInfo only answers for personal chats",
        ));
    }
    positive_id(value.strip_prefix('+').unwrap_or(value), "a MAX chat id")
}

/// `digits` as a positive 64-bit id (leading zeros dropped); `what` names it in reasons.
fn positive_id(digits: &str, what: &str) -> Result<ChatId, Invalid> {
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Invalid::new(format!(
            "{what} must be a positive whole number"
        )));
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Err(Invalid::new(format!("{what} must be greater than zero")));
    }
    if digits.len() > MAX_ID_DIGITS || digits.parse::<i64>().is_err() {
        return Err(Invalid::new(format!("too long for {what}")));
    }
    Ok(ChatId {
        id: digits.to_string(),
        phone: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wa(raw: &str) -> Result<String, String> {
        normalise(raw, Notation::of(Messenger::Whatsapp))
            .map(|c| c.id)
            .map_err(|e| e.message)
    }

    fn ru() -> Notation {
        Notation {
            default_country: Some("RU".parse().unwrap()),
            ..Notation::of(Messenger::Whatsapp)
        }
    }

    fn tg(raw: &str, telegram_ids: bool) -> Result<String, String> {
        let notation = Notation {
            telegram_ids,
            ..Notation::of(Messenger::Telegram)
        };
        normalise(raw, notation)
            .map(|c| c.id)
            .map_err(|e| e.message)
    }

    #[test]
    fn telegram_values_are_phones_usernames_or_ids() {
        for raw in [
            "+7 (987) 654-32-10",
            "79876543210",
            "+79876543210",
            "79876543210.0",
        ] {
            assert_eq!(tg(raw, false).as_deref(), Ok("+79876543210"), "{raw}");
        }
        for raw in [
            "@Vasilisa_W",
            "https://t.me/vasilisa_w",
            "T.ME/vasilisa_w/",
            " @vasilisa_w ",
        ] {
            assert_eq!(tg(raw, false).as_deref(), Ok("@vasilisa_w"), "{raw}");
        }
        // Bare digits are phone numbers unless --telegram-ids says the column holds ids.
        assert_eq!(tg("0010000000", true).as_deref(), Ok("10000000"));
        assert_eq!(tg("+7 987 654 32 10", true).as_deref(), Ok("+79876543210"));
        assert!(tg("10000000", false)
            .unwrap_err()
            .contains("--telegram-ids"));
        assert!(tg("-100123", true).unwrap_err().contains("group"));
        assert!(tg("@ab", false).unwrap_err().contains("4 to 32"));
        assert!(tg("@1abc", false).is_err());
        assert!(tg("@abc-def", false).is_err());
        assert_eq!(
            "Telegram".parse::<Messenger>().unwrap(),
            Messenger::Telegram
        );
        // Found by the property test: an old Brazilian mobile in the national format is the
        // same number as when written internationally.
        let br = Notation {
            default_country: Some("BR".parse().unwrap()),
            ..Notation::of(Messenger::Telegram)
        };
        let national = normalise("3170000000", br).unwrap().id;
        assert_eq!(normalise(&national, br).unwrap().id, national);
        assert!(needs_resolving("+79876543210") && needs_resolving("@vasilisa_w"));
        assert!(!needs_resolving("10000000") && !needs_resolving("79001234567@c.us"));
    }

    fn wa_ru(raw: &str) -> Result<String, String> {
        normalise(raw, ru()).map(|c| c.id).map_err(|e| e.message)
    }

    #[test]
    fn whatsapp_formats_become_one_chat_id() {
        for raw in [
            "+7 (900) 123-45-67",
            "79001234567",
            " 79001234567 ",
            "79001234567@c.us",
            "79001234567@C.US",
            "+79001234567",
            "0079001234567",
        ] {
            assert_eq!(wa(raw).as_deref(), Ok("79001234567@c.us"), "{raw}");
        }
    }

    #[test]
    fn numbers_written_as_decimals_keep_their_digits() {
        // A numeric database column or a spreadsheet writes 79001234567 as 79001234567.0; the
        // zero decimals must not become a twelfth digit (another person's number).
        for raw in [
            "79001234567.0",
            "79001234567.00",
            "79001234567,0",
            "+79001234567.0",
        ] {
            assert_eq!(wa_ru(raw).as_deref(), Ok("79001234567@c.us"), "{raw}");
        }
        assert!(wa_ru("79001234567.5").is_err());
    }

    #[test]
    fn a_national_number_never_becomes_an_id_longer_than_fifteen_digits() {
        // Found by the property test below: read as German, this became 4985000000000000.
        let de = Some("DE".parse().unwrap());
        let notation = Notation {
            default_country: de,
            ..Notation::of(Messenger::Whatsapp)
        };
        let err = normalise("85000000000000", notation).unwrap_err();
        assert!(err.message.contains("16 digits"), "{}", err.message);
    }

    #[test]
    fn national_formats_need_a_default_country() {
        assert_eq!(wa_ru("8 900 123-45-67").as_deref(), Ok("79001234567@c.us"));
        assert_eq!(wa_ru("8 (900) 1234567").as_deref(), Ok("79001234567@c.us"));
        assert!(wa("8 900 123-45-67")
            .unwrap_err()
            .contains("--default-country"));
    }

    #[test]
    fn the_default_country_reads_bare_digits_first() {
        // 84951234567 would be a Vietnamese number; with RU it is Moscow's 8 (495) 123-45-67.
        assert_eq!(wa_ru("8 495 123-45-67").as_deref(), Ok("74951234567@c.us"));
        assert_eq!(wa_ru("74951234567").as_deref(), Ok("74951234567@c.us"));
        // Foreign numbers without their + still resolve.
        assert_eq!(wa_ru("4915123456789").as_deref(), Ok("4915123456789@c.us"));
        assert_eq!(wa_ru("+7 495 123 45 67").as_deref(), Ok("74951234567@c.us"));
    }

    #[test]
    fn too_many_digits_for_the_country_are_invalid() {
        assert!(wa("+7 900 123 45 67 89").is_err());
        assert!(wa("7900123456789").is_err());
        assert!(wa_ru("7900123456789").is_err());
    }

    #[test]
    fn other_countries_keep_their_code() {
        assert_eq!(wa("+44 20 7946 0958").as_deref(), Ok("442079460958@c.us"));
        assert_eq!(wa("+1 (415) 555-2671").as_deref(), Ok("14155552671@c.us"));
        assert_eq!(wa("+49 1512 3456789").as_deref(), Ok("4915123456789@c.us"));
    }

    #[test]
    fn ids_as_whatsapp_writes_them_are_taken_as_they_are() {
        // libphonenumber calls 521… invalid since Mexico dropped the 1, but it is WhatsApp's id.
        assert_eq!(
            wa("5215512345678@c.us").as_deref(),
            Ok("5215512345678@c.us")
        );
        assert_eq!(wa("12345678@c.us").as_deref(), Ok("12345678@c.us"));
        assert!(wa("1234567@c.us").unwrap_err().contains("8 to 15 digits"));
        assert_eq!(
            wa("120650379300963@lid").as_deref(),
            Ok("120650379300963@lid")
        );
        assert!(wa("abc@lid").unwrap_err().contains("@lid"));
        let lid = normalise("120650379300963@LID", Notation::of(Messenger::Whatsapp)).unwrap();
        assert_eq!((lid.id.as_str(), lid.phone), ("120650379300963@lid", None));
    }

    #[test]
    fn country_rules_follow_the_faq_examples() {
        assert_eq!(wa("+52 56 3969 1841").as_deref(), Ok("5215639691841@c.us"));
        assert_eq!(
            wa("+52 1 55 1234 5678").as_deref(),
            Ok("5215512345678@c.us")
        );
        assert_eq!(
            wa("+54 11 15 5874 9895").as_deref(),
            Ok("5491158749895@c.us")
        );
        assert_eq!(wa("+55 21 91234 5678").as_deref(), Ok("5521912345678@c.us"));
        assert_eq!(wa("+55 92 98172 3241").as_deref(), Ok("559281723241@c.us"));
        assert_eq!(wa("994507654321").as_deref(), Ok("994507654321@c.us"));
        // Azerbaijan has no numbers starting 98 (the fast path used to pass it on its length).
        assert!(wa("994987654321").is_err());
        assert_eq!(wa("+7 701 234 56 78").as_deref(), Ok("77012345678@c.us"));
        assert_eq!(wa_ru("8 900 123-45-67").as_deref(), Ok("79001234567@c.us"));
    }

    #[test]
    fn phone_digits_are_kept() {
        let id = normalise("+7 900 123 45 67", Notation::of(Messenger::Whatsapp)).unwrap();
        assert_eq!(id.phone.as_deref(), Some("79001234567"));
    }

    #[test]
    fn invalid_values_have_reasons() {
        assert_eq!(wa("").unwrap_err(), "empty value");
        assert_eq!(wa("   ").unwrap_err(), "empty value");
        assert!(wa("call me").unwrap_err().contains("letters"));
        assert!(wa("12345").unwrap_err().contains("too short"));
        assert!(wa("1234567890123456789").unwrap_err().contains("too long"));
        assert!(wa("120363043968066561@g.us").unwrap_err().contains("group"));
        assert!(wa("abc@c.us").unwrap_err().contains("@c.us"));
        assert!(wa("someone@example.com").unwrap_err().contains("@c.us"));
        assert!(
            wa("+7 000 000 00 00").is_err(),
            "{:?}",
            wa("+7 000 000 00 00")
        );
    }

    #[test]
    fn max_ids_are_positive_integers() {
        let max = |raw: &str| normalise(raw, Notation::of(Messenger::Max)).map(|c| c.id);
        assert_eq!(max(" 10000000 ").unwrap(), "10000000");
        assert_eq!(max("0010000000").unwrap(), "10000000");
        assert!(max("-10000000").unwrap_err().message.contains("group"));
        assert!(max("12ab").unwrap_err().message.contains("positive whole"));
        assert!(max("0").unwrap_err().message.contains("greater than zero"));
        assert!(max("99999999999999999999")
            .unwrap_err()
            .message
            .contains("too long"));
        assert!(max("").is_err());
    }

    #[test]
    fn messenger_and_country_parse() {
        assert_eq!("MAX".parse::<Messenger>().unwrap(), Messenger::Max);
        assert!("viber".parse::<Messenger>().is_err());
        assert!("ru".parse::<DefaultCountry>().is_ok());
        assert!("XX1".parse::<DefaultCountry>().is_err());
    }

    #[test]
    fn common_numbers_take_the_fast_path() {
        let ru = Some("RU".parse().unwrap());
        for (number, country) in [
            ("+7 900 123-45-67", None),
            ("79001234567", None),
            ("79001234567", ru),
            ("0049 30 12345678", None),
            ("+55 21 91234-5678", None),
            ("+52 1 55 1234 5678", None),
        ] {
            let reading = Reading::of(number, country);
            assert!(reading.fast().is_some(), "{number}");
            assert_eq!(reading.fast(), reading.full().ok(), "{number}");
        }
        // A national number is the full parser's.
        assert_eq!(Reading::of("8 900 123-45-67", ru).fast(), None);
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn countries() -> impl Strategy<Value = Option<DefaultCountry>> {
            prop::option::of(
                prop::sample::select(vec!["RU", "KZ", "BR", "MX", "AR", "AZ", "US", "DE", "IN"])
                    .prop_map(|c| c.parse().unwrap()),
            )
        }

        /// Text shaped like what CRMs hold: numbers in many notations, ids, and noise.
        fn crm_values() -> impl Strategy<Value = String> {
            prop_oneof![
                any::<String>(),
                "(\\+|00|8)?[0-9]{1,3}[ ()-]{0,2}[0-9]{2,5}[ .-]?[0-9]{2,4}[ -]?[0-9]{0,4}",
                "[0-9]{1,22}(\\.0{1,3}|,0)?",
                "[0-9]{0,20}@(c\\.us|C\\.US|lid|g\\.us)",
                "-?[0-9]{1,25}",
            ]
        }

        /// Numbers as CRMs write them: a country code libphonenumber knows (the `8` of Russian
        /// national numbers too), more digits, with or without `+`, `00` and punctuation.
        fn numbers() -> impl Strategy<Value = String> {
            let codes = vec![
                "1", "7", "20", "27", "31", "33", "34", "39", "44", "49", "52", "521", "54", "549",
                "55", "61", "62", "63", "66", "81", "84", "86", "90", "91", "98", "212", "234",
                "254", "351", "375", "380", "420", "880", "966", "971", "994", "998",
            ];
            (
                prop::sample::select(vec!["", "+", "00", "8", "0"]),
                prop::sample::select(codes),
                prop::sample::select(vec!["", " ", "-", " ("]),
                "[0-9]{4,13}",
            )
                .prop_map(|(prefix, code, gap, rest)| format!("{prefix}{code}{gap}{rest}"))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// The fast path answers only as libphonenumber's full parser does.
            #[test]
            fn the_fast_path_gives_what_the_full_parser_gives(
                number in prop_oneof![3 => numbers(), 1 => crm_values()],
                country in countries(),
            ) {
                let reading = Reading::of(&number, country);
                if let Some(fast) = reading.fast() {
                    prop_assert_eq!(Ok(fast), reading.full(), "{:?} read in {:?}", number, country);
                }
            }

            /// Any text: no panic, an id or a reason; an id normalises to itself.
            #[test]
            fn any_value_is_an_id_that_is_its_own_normal_form_or_a_reason(
                raw in crm_values(),
                country in countries(),
            ) {
                let notations = [
                    (Messenger::Whatsapp, false),
                    (Messenger::Max, false),
                    (Messenger::Telegram, false),
                    (Messenger::Telegram, true),
                ]
                .map(|(messenger, telegram_ids)| Notation { messenger, default_country: country, telegram_ids });
                for notation in notations {
                    match normalise(&raw, notation) {
                        Ok(id) => {
                            let again = normalise(&id.id, notation).map(|c| c.id);
                            prop_assert_eq!(again.as_ref().ok(), Some(&id.id), "{:?} from {:?}", again, raw);
                        }
                        Err(e) => prop_assert!(!e.message.is_empty()),
                    }
                }
            }
        }
    }
}
