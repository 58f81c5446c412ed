"""Pure functions from a study and predictions to figures, tables and HTML."""
