"""The demo page's confidence picture and character table (`mambaocr_hf.demo.render`): pure PIL, no Gradio."""

from PIL import Image

from mambaocr_hf.demo.render import char_rows, confidence_color, confidence_picture, label_layout


def test_confidence_picture_colours_each_character_where_it_was_read():
    image = Image.new("RGB", (100, 20), "white")
    chars = [
        {"char": "a", "confidence": 0.95, "x_start": 10.0, "x_end": 20.0},
        {"char": "b", "confidence": 0.2, "x_start": 60.0, "x_end": 70.0},
    ]
    picture = confidence_picture(image, chars, threshold=0.5, height=40)
    assert picture.width == 200  # 100 px wide at scale 2
    flag_band = max(12, 40 // 4) + 4
    underline_y = flag_band + 40 + 3
    assert picture.getpixel((30, underline_y)) == confidence_color(0.95)  # under "a": x 10-20 -> 20-40
    assert picture.getpixel((130, underline_y)) == confidence_color(0.2)  # under "b": x 60-70 -> 120-140
    assert picture.getpixel((80, underline_y)) == (255, 255, 255)  # nothing read between them
    # the flag band: a red "!" above the low-confidence character only
    flags = picture.crop((0, 0, picture.width, flag_band))
    red_columns = {
        x
        for x in range(flags.width)
        for y in range(flags.height)
        if flags.getpixel((x, y))[0] > 150 > flags.getpixel((x, y))[1]
    }
    assert red_columns and all(120 <= x < 140 for x in red_columns)
    assert confidence_color(0.0) == (220, 38, 38) and confidence_color(1.0) == (22, 163, 74)
    assert char_rows("w.png", chars, 0.5) == [
        ["w.png", 1, "a", 0.95, 10.0, 20.0, ""],
        ["w.png", 2, "b", 0.2, 60.0, 70.0, "low"],
    ]


def _label_columns(picture: Image.Image, top: int, bottom: int) -> list[int]:
    """Columns of the band `top..bottom` that hold ink (anything not white)."""
    band = picture.crop((0, top, picture.width, bottom)).convert("L")
    return [x for x in range(band.width) if any(band.getpixel((x, y)) < 200 for y in range(band.height))]


def test_labels_of_characters_read_close_together_do_not_overlap():
    # CTC emits narrow letters a frame or two apart: "illicit" at 2.5 px a character, scaled 3x
    centers, widths = [3.0 * (2.5 * i + 1) for i in range(7)], [18.0] * 7
    layout = label_layout(centers, widths, canvas_width=60, gap=3)
    rows: dict[int, list[tuple[float, float]]] = {}
    for (center, row), width in zip(layout, widths):
        assert width / 2 <= center <= 60 - width / 2  # inside the picture, never cut at an edge
        rows.setdefault(row, []).append((center - width / 2, center + width / 2))
    for spans in rows.values():  # on each row, a label clears the one before it
        assert all(left >= previous_right + 3 for (_, previous_right), (left, _) in zip(spans, spans[1:]))
    assert len(rows) > 1
    # labels with room keep one row, centred under their boxes; an edge label moves inwards
    assert label_layout([10.0, 50.0, 90.0], [12.0] * 3, canvas_width=100) == [(10.0, 0), (50.0, 0), (90.0, 0)]
    assert label_layout([1.0, 99.0], [12.0] * 2, canvas_width=100) == [(6.0, 0), (94.0, 0)]
    assert label_layout([], [], canvas_width=10) == []


def test_confidence_picture_grows_a_label_row_only_when_labels_would_collide():
    image = Image.new("RGB", (100, 20), "white")
    apart = [
        {"char": "a", "confidence": 0.91, "x_start": 10.0, "x_end": 20.0},
        {"char": "b", "confidence": 0.92, "x_start": 60.0, "x_end": 70.0},
    ]
    close = [
        {"char": "i", "confidence": 0.73, "x_start": 10.0, "x_end": 12.0},
        {"char": "l", "confidence": 0.99, "x_start": 12.0, "x_end": 14.0},
    ]
    one_row, two_rows = confidence_picture(image, apart, height=40), confidence_picture(image, close, height=40)
    label_size = max(12, 40 // 4)
    assert two_rows.height == one_row.height + 2 * label_size + 10
    # the second row's label sits under the first row's: ink in both rows, each a separate label
    text_top = label_size + 4 + 40 + 2 + 8
    first = _label_columns(two_rows, text_top, text_top + 2 * label_size + 10)
    second = _label_columns(two_rows, text_top + 2 * label_size + 10, two_rows.height)
    assert first and second
    assert _label_columns(one_row, text_top, one_row.height)  # the labels of characters apart: one row
