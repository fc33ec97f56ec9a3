-- Room on every rollup page for the next version of its rows. A settlement updates the same
-- hour and day rows again and again (each call's user, key and model, and the totals); with
-- full pages each update moved the row to another page and added an entry to the wide
-- primary key; with room on the page the update stays there (HOT: no index entry), which cut
-- the rollup upsert's time by about a quarter in bench/settlement.py. Pages written from now
-- on keep the room; the rollups are small next to the rows (bench/reports.py).
ALTER TABLE usage_rollups SET (fillfactor = 70);
