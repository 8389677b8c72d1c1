-- Own devices (issue 13): the bindings that passed through this cluster, from the registrar's
-- 2xx to a REGISTER relayed with our Path. A device is known by the flow its REGISTER came on
-- (transport:address:port); a binding past expires_at counts for nothing and is purged.
CREATE TABLE bindings (
    aor        TEXT NOT NULL,
    contact    TEXT NOT NULL,
    flow       TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (aor, contact)
);
CREATE INDEX bindings_flow ON bindings (flow, expires_at);
CREATE INDEX bindings_expires ON bindings (expires_at);
