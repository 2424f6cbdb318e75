//! WhatsApp's own rules for some countries' numbers, from GREEN-API's FAQ (pure). Each country
//! has two forms: the one libphonenumber validates (`canonical`) and the one WhatsApp uses as the
//! chat id (`whatsapp`). Numbers of other countries are the same in both.

use std::borrow::Cow;

/// Brazilian area codes whose mobiles keep the ninth digit in WhatsApp ids.
const BRAZIL_NINTH_DIGIT_AREAS: [&str; 11] = [
    "11", "12", "13", "14", "15", "16", "17", "18", "19", "21", "22",
];
const BRAZIL_MORE_NINTH_DIGIT_AREAS: [&str; 3] = ["24", "27", "28"];

fn keeps_ninth_digit(area: &str) -> bool {
    BRAZIL_NINTH_DIGIT_AREAS.contains(&area) || BRAZIL_MORE_NINTH_DIGIT_AREAS.contains(&area)
}

/// International digits in the form libphonenumber validates.
pub(crate) fn canonical(digits: &str) -> Cow<'_, str> {
    if let Some(national) = digits.strip_prefix("52") {
        // Mexico: `521` + 10 digits is the mobile form WhatsApp uses; the plan dropped the 1.
        if national.len() == 11 && national.starts_with('1') {
            return format!("52{}", &national[1..]).into();
        }
    }
    if let Some(national) = digits.strip_prefix("54") {
        if let Some(mobile) = argentina_mobile(national) {
            return format!("549{mobile}").into();
        }
    }
    if let Some(national) = digits.strip_prefix("55") {
        // Brazil: a mobile written without its ninth digit gets it back for validation.
        if national.len() == 10
            && !keeps_ninth_digit(&national[..2])
            && national[2..].starts_with(['6', '7', '8', '9'])
        {
            return format!("55{}9{}", &national[..2], &national[2..]).into();
        }
    }
    digits.into()
}

/// The chat id digits WhatsApp uses for a valid number in canonical form.
pub(crate) fn whatsapp(digits: String) -> String {
    if let Some(national) = digits.strip_prefix("52") {
        if national.len() == 10 {
            return format!("521{national}");
        }
    }
    if let Some(national) = digits.strip_prefix("55") {
        let (area, subscriber) = national.split_at(2.min(national.len()));
        if subscriber.len() == 9 && subscriber.starts_with('9') && !keeps_ninth_digit(area) {
            return format!("55{area}{}", &subscriber[1..]);
        }
    }
    digits
}

/// The 10 digits (area code and subscriber) of an Argentinian number written as a mobile: with
/// the `9` after the country code, or with the local `15` after a 2–4 digit area code.
fn argentina_mobile(national: &str) -> Option<String> {
    match national.len() {
        11 if national.starts_with('9') => Some(national[1..].to_string()),
        12 => (2..=4)
            .filter(|&area| national.starts_with("11") == (area == 2))
            .find(|&area| &national[area..area + 2] == "15")
            .map(|area| format!("{}{}", &national[..area], &national[area + 2..])),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The form WhatsApp uses, from digits as written.
    fn id(digits: &str) -> String {
        whatsapp(canonical(digits).into_owned())
    }

    #[test]
    fn mexico_mobiles_get_the_1() {
        assert_eq!(id("525639691841"), "5215639691841");
        assert_eq!(id("5215512345678"), "5215512345678");
        assert_eq!(canonical("5215512345678"), "525512345678");
    }

    #[test]
    fn argentina_gets_the_9_and_loses_the_15() {
        // +54 11 15 5874 9895 (Buenos Aires, local 15), and the same number written as a mobile.
        assert_eq!(id("54111558749895"), "5491158749895");
        assert_eq!(id("5491158749895"), "5491158749895");
        // +54 351 15 123 4567 (Córdoba) and +54 2966 15 123456 (Río Gallegos).
        assert_eq!(id("54351151234567"), "5493511234567");
        assert_eq!(id("54296615123456"), "5492966123456");
    }

    #[test]
    fn brazil_keeps_the_ninth_digit_only_in_some_areas() {
        assert_eq!(id("5521912345678"), "5521912345678");
        assert_eq!(id("5592981723241"), "559281723241");
        assert_eq!(canonical("559281723241"), "5592981723241");
        assert_eq!(id("559281723241"), "559281723241");
        // A landline (starts with 2-5) is left as it is.
        assert_eq!(id("559232345678"), "559232345678");
    }

    #[test]
    fn other_countries_are_unchanged() {
        assert_eq!(id("79001234567"), "79001234567");
        assert_eq!(id("77012345678"), "77012345678");
        assert_eq!(id("994987654321"), "994987654321");
    }
}
