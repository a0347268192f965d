"""Post-exercise reports: figures from the database, as JSON, CSV or one HTML file."""
