-- Canaries planted by a list's first single create are provisional (issue
-- 20): they carry that one create's instant and shape, and no leaf names
-- them while the create's leaf names its contact, so they can be told
-- apart. The list's first import retires them — their contact rows go,
-- their index rows stay (retired_at set), so a leaked copy of one still
-- traces to the list — and plants the list's canaries afresh at the
-- import's instant, shaped from its rows, where no leaf names any row.
ALTER TABLE canaries ADD COLUMN provisional BIGINT;
ALTER TABLE canaries ADD COLUMN retired_at BIGINT;

-- A tenant's ticket policy for reveal reasons (issue 20): a pattern (RE2)
-- the reason must contain a match of, and an optional webhook asked
-- whether the ticket exists. Under the settings' row MAC when set.
ALTER TABLE tenant_settings ADD COLUMN ticket_pattern TEXT;
ALTER TABLE tenant_settings ADD COLUMN ticket_webhook TEXT;
