//! Escaping of every value the connector places in a DN (RFC 4514) or a
//! search filter (RFC 4515), and the filters it builds from them.
//!
//! - [`dn_value`]: an attribute value inside an RDN. `"`, `+`, `,`, `;`, `<`,
//!   `=`, `>`, `\` and NUL are always hex-escaped, a leading space or `#` and a
//!   trailing space too; everything else (non-ASCII UTF-8 included) is kept.
//! - [`filter_value`]: an assertion value inside a filter. `*`, `(`, `)`, `\`
//!   and NUL are hex-escaped, so a value can never widen a filter into a
//!   wildcard or inject another filter component.
//!
//! Both delegate to `ldap3`'s `dn_escape` / `ldap_escape`, whose behaviour the
//! tests below pin down byte for byte.

use std::borrow::Cow;

/// Escapes an attribute value for use in an RDN (RFC 4514 section 2.4).
pub fn dn_value(value: &str) -> Cow<'_, str> {
    ldap3::dn_escape(value)
}

/// Escapes an assertion value for use in a search filter (RFC 4515 section 3).
pub fn filter_value(value: &str) -> Cow<'_, str> {
    ldap3::ldap_escape(value)
}

/// `(attribute=value)` with the value escaped. `attribute` must be an
/// attribute type from the configuration, never request data.
pub fn equality(attribute: &str, value: &str) -> String {
    format!("({attribute}={})", filter_value(value))
}

/// `(&(objectClass=class)(attribute=value))` with the value escaped.
pub fn class_and_equality(object_class: &str, attribute: &str, value: &str) -> String {
    format!("(&(objectClass={object_class}){})", equality(attribute, value))
}

/// The DN `rdn_attribute=value,parent` with the value escaped.
pub fn child_dn(rdn_attribute: &str, value: &str, parent: &str) -> String {
    format!("{rdn_attribute}={},{parent}", dn_value(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dn_specials_are_hex_escaped() {
        assert_eq!(dn_value("a,b"), "a\\2cb");
        assert_eq!(dn_value("a+b=c"), "a\\2bb\\3dc");
        assert_eq!(dn_value("\"q\";<x>"), "\\22q\\22\\3b\\3cx\\3e");
        assert_eq!(dn_value("back\\slash"), "back\\5cslash");
        assert_eq!(dn_value("nul\0"), "nul\\00");
        assert_eq!(dn_value("cn=admin,dc=example,dc=org"), "cn\\3dadmin\\2cdc\\3dexample\\2cdc\\3dorg");
    }

    #[test]
    fn dn_leading_and_trailing_specials_are_escaped_only_there() {
        assert_eq!(dn_value(" lead"), "\\20lead");
        assert_eq!(dn_value("trail "), "trail\\20");
        assert_eq!(dn_value("#hash"), "\\23hash");
        assert_eq!(dn_value("mid#dle mid"), "mid#dle mid");
        assert_eq!(dn_value(" "), "\\20");
    }

    #[test]
    fn dn_plain_and_unicode_values_are_kept() {
        assert_eq!(dn_value("alice"), "alice");
        assert_eq!(dn_value("Zoë Ünïcødé 名前"), "Zoë Ünïcødé 名前");
        assert_eq!(dn_value("*"), "*");
    }

    #[test]
    fn filter_specials_are_hex_escaped() {
        assert_eq!(filter_value("*"), "\\2a");
        assert_eq!(filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(filter_value(")(|(objectClass=*)"), "\\29\\28|\\28objectClass=\\2a\\29");
        assert_eq!(filter_value("a\\2a"), "a\\5c2a");
        assert_eq!(filter_value("nul\0"), "nul\\00");
        assert_eq!(filter_value("Zoë"), "Zoë");
    }

    #[test]
    fn a_dn_in_a_filter_is_escaped_twice() {
        let dn = child_dn("uid", "a*b\\c,d", "ou=people,dc=example,dc=org");
        assert_eq!(dn, "uid=a*b\\5cc\\2cd,ou=people,dc=example,dc=org");
        assert_eq!(equality("member", &dn), "(member=uid=a\\2ab\\5c5cc\\5c2cd,ou=people,dc=example,dc=org)");
    }

    #[test]
    fn filters_never_widen() {
        let filter = class_and_equality("inetOrgPerson", "uid", "*");
        assert_eq!(filter, "(&(objectClass=inetOrgPerson)(uid=\\2a))");
        assert!(ldap3::parse_filter(&filter).is_ok());
    }
}
