"""Tools that keep the lessons true: run every code block, check every link, count interview questions."""
