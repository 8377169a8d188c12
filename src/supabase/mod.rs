//! The Supabase Management API (functions, secrets, api keys).
//!
//! The client arrives with the platform phases; until then the phases that need
//! it report "not implemented". Project refs are used here to tell the two
//! environments apart.

/// Whether a string looks like a Supabase project ref (20 lower-case letters).
pub fn looks_like_project_ref(s: &str) -> bool {
    s.len() == 20 && s.bytes().all(|b| b.is_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    #[test]
    fn project_refs() {
        assert!(super::looks_like_project_ref("wadhydemushqqtcrrlwm"));
        assert!(!super::looks_like_project_ref("prod"));
    }
}
