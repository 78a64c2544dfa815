"""The CIFAR-10 classes: their names in label order, in English and in Chinese.

Every module that shows or groups classes reads them here.
"""

CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
NUM_CLASSES = len(CLASS_NAMES)

#: The Chinese name of each class (figures and the report).
CLASS_NAMES_ZH = {
    "airplane": "飞机",
    "automobile": "汽车",
    "bird": "鸟",
    "cat": "猫",
    "deer": "鹿",
    "dog": "狗",
    "frog": "青蛙",
    "horse": "马",
    "ship": "船",
    "truck": "卡车",
}

#: The report compares the vehicles with the animals.
VEHICLES = ("airplane", "automobile", "ship", "truck")
ANIMALS = tuple(name for name in CLASS_NAMES if name not in VEHICLES)
