"""Versioned DDL of the store. Append a migration; never edit one that has shipped."""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[list[str]] = [
    # 1: the ingestion ledger and the three fates of a record
    """
    CREATE TABLE imports (
        import_id     INTEGER PRIMARY KEY,
        kind          VARCHAR NOT NULL,      -- events | products
        source        VARCHAR NOT NULL,      -- file path or URL as given
        adapter       VARCHAR NOT NULL,
        sha256        VARCHAR,
        status        VARCHAR NOT NULL,      -- running | complete | failed | interrupted
        started_at    TIMESTAMPTZ NOT NULL,
        finished_at   TIMESTAMPTZ,
        input         BIGINT,
        accepted      BIGINT,
        quarantined   BIGINT,
        duplicates    BIGINT,
        reasons       JSON,                  -- {reason: count}
        seconds       DOUBLE,
        error         VARCHAR
    );
    CREATE SEQUENCE import_ids START 1;

    CREATE TABLE events (
        event_id VARCHAR NOT NULL,
        user_id VARCHAR,                     -- pseudonym, never a raw id
        session_id VARCHAR,
        item_id VARCHAR,
        type VARCHAR NOT NULL,
        value DOUBLE,
        price DOUBLE,
        currency VARCHAR,
        query VARCHAR,
        timestamp TIMESTAMPTZ NOT NULL,
        source VARCHAR,
        consent_personalisation BOOLEAN,
        consent_analytics BOOLEAN,
        ref_event_id VARCHAR,                -- a return's purchase
        import_id INTEGER NOT NULL
    );

    CREATE TABLE products (
        item_id VARCHAR NOT NULL,
        title VARCHAR,
        description VARCHAR,
        category_path VARCHAR[],
        brand VARCHAR,
        price DOUBLE,
        currency VARCHAR,
        attributes JSON,
        aliases VARCHAR[],
        source VARCHAR,
        updated_at TIMESTAMPTZ,
        record_id VARCHAR NOT NULL,          -- the accepted record this row came from
        import_id INTEGER NOT NULL
    );

    -- every accepted record of every product, the current one included
    CREATE TABLE product_versions AS SELECT * FROM products WITH NO DATA;

    CREATE TABLE quarantine (
        record_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        import_id INTEGER NOT NULL,
        line BIGINT,
        reasons VARCHAR[] NOT NULL,
        detail VARCHAR,
        item_id VARCHAR,
        hold_until TIMESTAMPTZ,
        payload VARCHAR,                     -- JSON: the source row, customer ids pseudonymised
        status VARCHAR NOT NULL,             -- held | released | dropped
        created_at TIMESTAMPTZ NOT NULL,
        resolved_at TIMESTAMPTZ,
        note VARCHAR
    );

    CREATE TABLE duplicates (
        record_id VARCHAR NOT NULL,
        kind VARCHAR NOT NULL,
        import_id INTEGER NOT NULL,
        line BIGINT,
        duplicate_of VARCHAR NOT NULL,
        rule VARCHAR NOT NULL                -- exact | near | superseded
    );

    CREATE TABLE profiles (
        import_id INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        column_name VARCHAR NOT NULL,
        stats JSON NOT NULL
    );

    CREATE TABLE drift (
        import_id INTEGER NOT NULL,
        baseline_import_id INTEGER NOT NULL,
        kind VARCHAR NOT NULL,
        column_name VARCHAR NOT NULL,
        metric VARCHAR NOT NULL,             -- psi | ks
        value DOUBLE NOT NULL,
        threshold DOUBLE NOT NULL,
        flagged BOOLEAN NOT NULL
    );
    """,
    # 2: privacy: who a held or duplicate record belongs to, the audit log, erased customers
    """
    ALTER TABLE quarantine ADD COLUMN user_id VARCHAR;     -- pseudonym, for erasure
    ALTER TABLE duplicates ADD COLUMN user_id VARCHAR;

    CREATE TABLE audit_log (
        seq BIGINT NOT NULL,
        logged_at TIMESTAMPTZ NOT NULL,
        action VARCHAR NOT NULL,             -- import | export | read_quarantine | erasure | ...
        subject VARCHAR,
        details VARCHAR NOT NULL,            -- JSON
        prev_hash VARCHAR NOT NULL,
        hash VARCHAR NOT NULL                -- sha256 over prev_hash and this entry
    );

    -- sha256 of the pseudonyms of erased customers: their records are refused on re-import,
    -- and the list itself holds no pseudonym
    CREATE TABLE erased_users (subject_hash VARCHAR NOT NULL, erased_at TIMESTAMPTZ NOT NULL);
    """,
    # 3: retention roll-ups and consent withdrawals
    """
    CREATE TABLE event_aggregates (
        day DATE NOT NULL,
        item_id VARCHAR,
        type VARCHAR NOT NULL,
        events BIGINT NOT NULL,
        quantity DOUBLE                      -- sum of value (units for purchases and returns)
    );

    -- customers who withdrew a consent purpose: sha256 of the pseudonym, as for erasure
    CREATE TABLE consent_withdrawals (
        subject_hash VARCHAR NOT NULL,
        purpose VARCHAR NOT NULL,            -- personalisation | analytics
        withdrawn_at TIMESTAMPTZ NOT NULL
    );
    """,
    # 4: the privacy-budget ledger of differentially private releases
    """
    CREATE TABLE privacy_releases (
        release_id INTEGER NOT NULL,
        dataset VARCHAR NOT NULL,            -- the events' source, or 'all'
        what VARCHAR NOT NULL,               -- e.g. popular
        epsilon DOUBLE NOT NULL,
        delta DOUBLE NOT NULL,
        released_at TIMESTAMPTZ NOT NULL,
        params VARCHAR NOT NULL              -- JSON: mechanism, scale, bounds
    );
    """,
    # 5: which key chain the store's pseudonyms were made with
    """
    CREATE TABLE key_state (
        generation INTEGER NOT NULL,
        fingerprints VARCHAR NOT NULL,       -- JSON list: a check value per key, never a key
        changed_at TIMESTAMPTZ NOT NULL
    );
    """,
    # 6: the catalog: every source's record of a product, how fields were chosen, the canonical
    # record's history, and what the catalog build learns
    """
    CREATE TABLE product_sources AS SELECT * FROM products;  -- the latest record per source
    ALTER TABLE product_sources ADD COLUMN received_at TIMESTAMPTZ;

    CREATE TABLE product_conflicts (
        item_id VARCHAR NOT NULL,
        field VARCHAR NOT NULL,              -- e.g. price, attributes.platform
        candidates JSON NOT NULL,            -- [{source, value}]
        chosen VARCHAR NOT NULL,             -- the winning source
        rule VARCHAR NOT NULL,               -- priority | freshest | complete
        why VARCHAR NOT NULL,
        resolved_at TIMESTAMPTZ NOT NULL
    );

    CREATE TABLE product_history AS SELECT * FROM products WITH NO DATA;
    ALTER TABLE product_history ADD COLUMN version INTEGER;
    ALTER TABLE product_history ADD COLUMN content_hash VARCHAR;
    ALTER TABLE product_history ADD COLUMN changed_fields VARCHAR[];
    ALTER TABLE product_history ADD COLUMN changed_at TIMESTAMPTZ;

    CREATE TABLE product_attributes (
        item_id VARCHAR NOT NULL,
        attribute VARCHAR NOT NULL,
        value VARCHAR NOT NULL,
        unit VARCHAR,
        evidence VARCHAR,
        method VARCHAR NOT NULL              -- rule | dictionary | source
    );

    CREATE TABLE product_categories (
        item_id VARCHAR NOT NULL,
        category VARCHAR,                    -- null when flagged: not confident enough
        confidence DOUBLE NOT NULL,
        filled BOOLEAN NOT NULL
    );

    CREATE TABLE product_duplicates (
        item_a VARCHAR NOT NULL,
        item_b VARCHAR NOT NULL,
        jaccard DOUBLE NOT NULL,
        cosine DOUBLE,
        reason VARCHAR NOT NULL
    );

    CREATE TABLE product_gaps (                -- missing values: filled (and how) or flagged
        item_id VARCHAR NOT NULL,
        field VARCHAR NOT NULL,
        filled BOOLEAN NOT NULL,
        value VARCHAR,
        how VARCHAR NOT NULL
    );

    -- the catalog as search and recommendations see it: canonical records with sound fills
    CREATE VIEW catalog_products AS
    WITH fills AS (
        SELECT item_id,
               max(TRY_CAST(value AS DOUBLE)) FILTER (WHERE field = 'price') AS price,
               max(value) FILTER (WHERE field = 'category') AS category
        FROM product_gaps WHERE filled GROUP BY item_id)
    SELECT p.* REPLACE (
        coalesce(p.price, f.price) AS price,
        CASE WHEN f.category IS NULL THEN p.category_path
             ELSE list_append(coalesce(p.category_path, []), f.category) END AS category_path)
    FROM products p LEFT JOIN fills f USING (item_id);
    """,
    # 7: the model registry, and retrains owed (e.g. after an erasure)
    """
    CREATE TABLE model_versions (
        name VARCHAR NOT NULL,               -- popularity, itemknn, als, ...
        version INTEGER NOT NULL,
        path VARCHAR NOT NULL,               -- relative to home
        status VARCHAR NOT NULL,             -- candidate | production | retired
        created_at TIMESTAMPTZ NOT NULL,
        data_hash VARCHAR NOT NULL,
        params JSON NOT NULL,
        metrics JSON NOT NULL,
        promoted_at TIMESTAMPTZ
    );

    CREATE TABLE model_retrains (
        name VARCHAR NOT NULL,
        reason VARCHAR NOT NULL,
        requested_at TIMESTAMPTZ NOT NULL,
        done_at TIMESTAMPTZ
    );
    """,
    # 8: graded relevance judgements of (query, product) pairs, for search evaluation and tuning
    """
    CREATE TABLE judgments (
        record_id VARCHAR NOT NULL,          -- the accepted source row this judgement came from
        query VARCHAR NOT NULL,              -- PII-scrubbed and normalised
        item_id VARCHAR NOT NULL,
        relevance INTEGER NOT NULL,          -- 1 (irrelevant) .. 4 (fully relevant)
        variance DOUBLE,                     -- the raters' variance, where the source has it
        source VARCHAR NOT NULL,             -- the adapter that read it
        import_id INTEGER NOT NULL,
        line BIGINT
    );
    """,
    # 9: what each customer in an A/B test was shown, for online metrics per variant
    """
    CREATE TABLE experiment_exposures (
        experiment VARCHAR NOT NULL,
        variant VARCHAR NOT NULL,
        user_id VARCHAR NOT NULL,            -- pseudonym
        surface VARCHAR NOT NULL,            -- recommendations | search
        items VARCHAR[] NOT NULL,            -- what was shown, in order
        shown_at TIMESTAMPTZ NOT NULL
    );
    """,
    # 10: products taken off sale through the API; the catalog (search, training) leaves them out
    """
    CREATE TABLE product_removals (
        item_id VARCHAR PRIMARY KEY,
        removed_at TIMESTAMPTZ NOT NULL
    );

    CREATE OR REPLACE VIEW catalog_products AS
    WITH fills AS (
        SELECT item_id,
               max(TRY_CAST(value AS DOUBLE)) FILTER (WHERE field = 'price') AS price,
               max(value) FILTER (WHERE field = 'category') AS category
        FROM product_gaps WHERE filled GROUP BY item_id)
    SELECT p.* REPLACE (
        coalesce(p.price, f.price) AS price,
        CASE WHEN f.category IS NULL THEN p.category_path
             ELSE list_append(coalesce(p.category_path, []), f.category) END AS category_path)
    FROM products p LEFT JOIN fills f USING (item_id)
    WHERE p.item_id NOT IN (SELECT item_id FROM product_removals);
    """,
]
