"""The page layouts of an advisory (Markdown and HTML), as :class:`string.Template` text.

Kept apart from :mod:`stormwatch.threat.advisory` so that the layout reads as a page. Every
``$name`` is filled with text that is already escaped for the format (the advisory module does
it; a template never sees raw data). The HTML page is self-contained: inline style, no script,
no external resource, and a Content-Security-Policy that forbids loading any.
"""

from __future__ import annotations

from string import Template

MARKDOWN = Template("""\
# Advisory: $id $name

**Threat level: $level** (as of $at)
Observed by this installation from $since to $at.

| | |
|---|---|
$facts

## What this installation observed

$observed

$daily

## Recommended actions, in order

$actions

## Why the threat level is $level

$level_reasons

## References

$references
$notes
""")

HTML = Template("""\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>Advisory: $id $name</title>
<style>
body { font-family: sans-serif; max-width: 52em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
td.n { text-align: right; }
.level { display: inline-block; padding: 0.2em 0.8em; border-radius: 0.3em; font-weight: bold; }
.l1 { background: #cfc; } .l2 { background: #ff9; } .l3 { background: #fc6; } .l4 { background: #f66; }
.why { color: #555; }
</style>
</head>
<body>
<h1>Advisory: $id $name</h1>
<p><span class="level l$level_number">Threat level: $level</span> (as of $at)<br>
Observed by this installation from $since to $at.</p>
<table>
$facts
</table>
<h2>What this installation observed</h2>
$observed
$daily
<h2>Recommended actions, in order</h2>
$actions
<h2>Why the threat level is $level</h2>
$level_reasons
<h2>References</h2>
$references
$notes
</body>
</html>
""")
