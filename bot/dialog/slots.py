"""The appeal items we collect: how to ask for each, and how to check the answer.

The list and order of items per route come from the knowledge base (appeal_routes); this module
only knows how each item is asked and validated.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from bot.dialog import validators as v


@dataclass(frozen=True)
class SlotSpec:
    name: str
    kind: str  # text | image | video
    ask: str  # the question, with the reason and an example
    validate: Callable[[str], v.Validation] | None = None  # text slots
    sensitive: bool = False  # never echoed in full


SLOTS: dict[str, SlotSpec] = {s.name: s for s in [
    SlotSpec("account_name", "text", "请发送你的【大鱼号名称】(平台据此找到你的账号),例如:小鱼的美食日记",
             v.validate_account_name),
    SlotSpec("real_name", "text", "请发送身份证上的【姓名】(需与证件一致,少数民族姓名可带“·”),例如:张三",
             v.validate_real_name, sensitive=True),
    SlotSpec("id_number", "text", "请发送【身份证号码】(18位,末位可能是X;仅保存在加密的申诉材料中),例如:11010519491231002X",
             v.validate_id_number, sensitive=True),
    SlotSpec("id_handheld_photo", "image", "请发送【手持身份证正面照片】(本人手持身份证正面,脸和证件信息都要清晰,无反光遮挡)"),
    SlotSpec("id_front_photo", "image", "请发送【单独身份证正面照片】(人像面,四角完整、清晰、无反光)"),
    SlotSpec("id_back_photo", "image", "请发送【单独身份证反面照片】(国徽面,四角完整、清晰)"),
    SlotSpec("error_prompt", "text", "请发送认证失败时看到的【异常提示语】原文,例如:人脸与公安网照片不一致,请确保是账户本人操作"),
    SlotSpec("taobao_screenshot", "image", "请发送【淘宝认证异常截图】(淘宝APP里显示失败提示的那一屏截图)"),
    SlotSpec("phone_model", "text", "请发送你的【手机型号】(帮助平台排查兼容问题),例如:iPhone 13 或 华为 Mate 60",
             v.validate_phone_model),
    SlotSpec("taobao_version", "text", "请发送【淘宝版本】号(淘宝APP“我的淘宝-设置-关于淘宝”可以看到),例如:10.38.0",
             v.validate_taobao_version),
    SlotSpec("failure_video", "video", "请发送【实名认证失败录制视频】(用另一台手机拍摄,非录屏;本人正脸出镜,从大鱼号后台点击“立即认证”开始,扫脸、扫描身份证正反面,直到出现失败提示的全过程,视频需清晰)"),
    SlotSpec("military_docs", "image", "请发送【军人相关证件】的照片"),
    SlotSpec("contact", "text", "请发送你的【联系方式】(平台核实时联系你),手机号、邮箱或微信号均可,例如:13800138000",
             v.validate_contact),
]}

# The optional military item is preceded by a yes/no question instead of being asked directly.
MILITARY_SLOT = "military_docs"
MILITARY_QUESTION = "你是否涉及军人身份(需要提供军人相关证件)?回复“是”或“否”(不涉及回复“否”或“跳过”)"
NOT_APPLICABLE = "未涉及"
