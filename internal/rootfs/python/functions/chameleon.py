"""FunctionBench chameleon: render an HTML table with a Chameleon page
template. The input is JSON {"rows": R, "cols": C, "seed": S}; the cells
hold text drawn from S (some of it needing HTML escaping). The template is
compiled once, when the module is imported (before the snapshot), as a
server keeps its templates."""

import hashlib
import json
import random

from chameleon import PageTemplate

TEMPLATE = """\
<table xmlns:tal="http://xml.zope.org/namespaces/tal">
  <tr tal:repeat="row rows" tal:attributes="class repeat['row'].odd and 'odd' or 'even'">
    <td tal:repeat="cell row" tal:attributes="id 'c%d' % cell[0]; class 'third' if cell[0] % 3 == 0 else None"
        tal:content="cell[1]">cell</td>
  </tr>
</table>"""

WORDS = ("page", "cache", "fault", "snapshot", "<restore>", "guest & host", "prefetch", '"set"')

_tmpl = PageTemplate(TEMPLATE)


def handle(data):
    req = json.loads(data)
    n_rows, n_cols = int(req["rows"]), int(req["cols"])
    r = random.Random(int(req["seed"]))
    rows = [[(i * n_cols + j, r.choice(WORDS)) for j in range(n_cols)] for i in range(n_rows)]
    html = _tmpl.render(rows=rows).encode()
    return b"%d %d %d %s" % (n_rows, n_cols, len(html), hashlib.sha256(html).hexdigest().encode())
