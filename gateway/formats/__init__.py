"""The only code that knows provider JSON shapes. No HTTP client or web framework here."""
