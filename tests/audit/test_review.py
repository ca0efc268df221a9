from spectrum_core.audit.review import highlight_tokens


def test_tokens_are_escaped_and_shaded():
    markup = highlight_tokens(["<script>", "alert(1)", "</script>", " ok"], [0.0, 2.0, 0.0, 4.0])
    assert "<script>" not in markup and "&lt;script&gt;" in markup
    assert "rgba(42,157,143,0.50)" in markup and "rgba(42,157,143,1.00)" in markup
    assert markup.count("<span") == 4
