//! The service's value checks, shared by [`place_order`](crate::place_order) and the bulk rows'
//! validation hooks, so both refuse the same input the same way on every backend.

/// Why `text` cannot be stored: empty when `required`, over `max` characters (counted as the
/// databases count them), or holding a NUL byte (PostgreSQL cannot store one in text; MySQL and
/// SQLite would).
pub(crate) fn text_problem(text: &str, required: bool, max: Option<usize>) -> Option<String> {
    if required && text.is_empty() {
        return Some("it is empty".to_owned());
    }
    if let Some(max) = max {
        let chars = text.chars().count();
        if chars > max {
            return Some(format!("{chars} characters, at most {max} fit"));
        }
    }
    text.contains('\0').then(|| "it holds a NUL byte".to_owned())
}

/// Why a line's numbers cannot be stored: a quantity that is not positive or a negative price.
pub(crate) fn amount_problem(quantity: i32, unit_cents: i64) -> Option<String> {
    if quantity <= 0 {
        return Some(format!("the quantity must be positive, got {quantity}"));
    }
    (unit_cents < 0).then(|| format!("the unit price cannot be negative, got {unit_cents} cents"))
}
