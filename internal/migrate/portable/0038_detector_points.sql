-- The detector's window points, one row each (issue 18): a point is
-- written once, when its event is evaluated, and deleted once, when it
-- leaves its window, instead of every window being re-marshalled into
-- detector_state.state with the cursor every second. detector_state.state
-- keeps, per window, the seq of its first point and how many it holds
-- (covered by that row's MAC); each point row carries its own MAC over
-- (name, seq, wkey, point), so a row altered, removed or added by a hand
-- in the database fails the detector's load. Portable.
CREATE TABLE detector_points (
    name  TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    wkey  TEXT NOT NULL,
    point TEXT NOT NULL,
    mac   TEXT,
    PRIMARY KEY (name, seq)
);
CREATE INDEX detector_points_window ON detector_points (name, wkey, seq);
