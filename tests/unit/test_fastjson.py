import json
import os
import subprocess
import sys

import pytest

from dockyard.utils import fastjson

DOCS = ['{"a": [1, 2.5, -3e5, true, false, null, "x\\u00e9\\n"], "b": {}}', " [] ", '"\\u00e9"', "1", '{"a":{"b":[{}]}}']


@pytest.mark.parametrize("doc", DOCS)
def test_same_as_the_json_package(doc):
    value = json.loads(doc)
    assert fastjson.loads(doc) == value
    assert fastjson.dumps(value) == json.dumps(value, separators=(",", ":"))


@pytest.mark.parametrize("bad", ["{", '{"a":1} x', "", "nul", '{"a" 1}', "[1,]", "\ufeff{}"])
def test_malformed_input_is_a_value_error(bad):
    with pytest.raises(ValueError):
        fastjson.loads(bad)


def test_errors_without_the_json_package_loaded():
    code = ("import sys; from dockyard.utils import fastjson\n"
            "assert 're' not in sys.modules and 'json' not in sys.modules\n"
            "try:\n    fastjson.loads('{broken')\nexcept ValueError as e:\n    print('ok', e)\n")
    src = os.path.dirname(os.path.dirname(os.path.dirname(fastjson.__file__)))
    out = subprocess.run([sys.executable, "-I", "-S", "-c", f"import sys; sys.path.insert(0, {src!r}); " + code],
                         capture_output=True, text=True, cwd="/")
    assert out.stdout.startswith("ok Expecting property name"), out.stderr
